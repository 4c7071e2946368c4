"""Errors the core reports to users: each names the thing and the problem."""
from __future__ import annotations


class CoreError(Exception):
    """Base class for user-facing errors in annotator.core."""


class ImageLoadError(CoreError, ValueError):
    """An image file that cannot be read (missing, truncated, unknown format)."""


class FormatError(CoreError, ValueError):
    """A dataset file that is malformed; names the file, the record and the problem."""

    def __init__(self, path: object, problem: str, record: str | None = None):
        self.path, self.problem, self.record = str(path), problem, record
        where = f"{self.path}" + (f", {record}" if record else "")
        super().__init__(f"{where}: {problem}")


class ProjectError(CoreError):
    """A project file that cannot be opened or changed (newer schema, bad reference...)."""


class InputError(CoreError):
    """A command-line value that cannot be used (names the option and the problem)."""
