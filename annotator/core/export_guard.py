"""Where an export may write: never over the project, its images or a user's file.

Before a writer writes anything it hands every path it will write to `ExportGuard.check`,
which refuses the whole export (ExportRefused, nothing written) when any of them:
- is the project file, its -wal / -shm / .lock, or an image of the project: never, not
  even with `overwrite` (a file is compared by its real folder and name, so a symlinked
  folder or a ".." does not hide it);
- is an existing folder where a file goes, or lies under an existing file: never;
- already exists and was not written by an earlier export of the same format, or was
  changed since: only with `overwrite`.

What an export wrote is recorded, after it wrote it, in a manifest in the export's
folder (`.annotator-exports`: JSON, but no .json suffix so that a LabelMe folder import
does not take it for a label file): for each file, the format and the sha256 of the
bytes written. A file is "ours" only while it still has those bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from annotator.core.errors import CoreError

MANIFEST = ".annotator-exports"
_WRITTEN_BY = "sam-annotator"


class ExportRefused(CoreError):
    """An export that would write where it must not; `overridable` when `overwrite`
    would allow it (existing files not written by an earlier export)."""

    def __init__(self, message: str, overridable: bool = False):
        super().__init__(message)
        self.overridable = overridable


def _real_key(path: Path, cache: dict[str, str]) -> str:
    """The real folder of `path` joined with its own name (the last part is not
    followed: writing replaces that directory entry, whatever it links to)."""
    parent = os.path.dirname(os.path.abspath(path))
    if parent not in cache:
        cache[parent] = os.path.realpath(parent)
    return os.path.normcase(os.path.join(cache[parent], os.path.basename(path)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def protected_files(project: Any) -> dict[str, str]:
    """Real key -> what it is, for the project's own files and every image of it."""
    cache: dict[str, str] = {}
    base = str(project.path)
    out = {_real_key(Path(base + suffix), cache): what for suffix, what in (
        ("", "the project file"), ("-wal", "the project's -wal file"),
        ("-shm", "the project's -shm file"), (".lock", "the project's lock file"))}
    root = project.image_root
    for img in project.images():
        out.setdefault(_real_key(root / img.file_name, cache),
                       f"image {img.file_name!r} of the project")
    return out


@dataclass
class ExportGuard:
    format_name: str
    folder: Path                   # where this export's manifest lives
    protected: dict[str, str]      # real key -> what it is
    overwrite: bool = False
    _cache: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_project(cls, project: Any, format_name: str, out: str | os.PathLike,
                    writes_folder: bool, overwrite: bool = False) -> ExportGuard:
        """The guard for exporting `project` as `format_name` to `out`, a folder when
        `writes_folder` (folder formats, COCO with a split) else a file."""
        out = Path(os.path.abspath(out))
        return cls(format_name, out if writes_folder else out.parent,
                   protected_files(project), overwrite)

    @property
    def manifest(self) -> Path:
        return self.folder / MANIFEST

    def check(self, paths: Iterable[Path]) -> None:
        """ExportRefused naming the first path that may not be written (and how many
        more there are) before anything is written."""
        paths = [Path(os.path.abspath(p)) for p in paths]
        record = self._read_manifest()
        hard: list[str] = []
        foreign: list[Path] = []
        for path in [*paths, self.manifest]:
            problem = self._never(path)
            if problem:
                hard.append(problem)
            elif os.path.lexists(path) and not self._ours(path, record):
                foreign.append(path)
        hard = list(dict.fromkeys(hard))     # files under one blocking file: said once
        if hard:
            raise ExportRefused(hard[0] + _more(len(hard) - 1))
        if foreign and not self.overwrite:
            first = foreign[0]
            what = ("is not an export record of this program" if first == self.manifest
                    else f"already exists and was not written by an earlier "
                         f"{self.format_name} export (or was changed since)")
            raise ExportRefused(f"{first}: {what}; nothing was written. Choose another "
                                f"place, or give --overwrite to replace "
                                f"{'it' if len(foreign) == 1 else f'these {len(foreign)} files'}",
                                overridable=True)

    def _never(self, path: Path) -> str | None:
        what = self.protected.get(_real_key(path, self._cache))
        if what:
            return f"{path}: is {what}; an export never writes over it"
        if os.path.isdir(path):
            return (f"{path}: is a folder; the {self.format_name} export writes a file "
                    f"there (give a file name, e.g. {path / 'export.json'})")
        for parent in path.parents:
            if os.path.lexists(parent):
                if not os.path.isdir(parent):
                    return (f"{parent}: is a file, not a folder; the {self.format_name} "
                            "export writes a folder there")
                break
        return None

    def _ours(self, path: Path, record: dict[str, Any] | None) -> bool:
        if record is None or os.path.islink(path):
            return False
        if path == self.manifest:
            return True
        entry = record.get(self._name(path))
        if not isinstance(entry, dict) or entry.get("format") != self.format_name:
            return False
        try:
            return entry.get("sha256") == _sha256(path)
        except OSError:
            return False

    def _name(self, path: Path) -> str:
        return os.path.relpath(path, self.folder).replace(os.sep, "/")

    def _read_manifest(self) -> dict[str, Any] | None:
        """The manifest's files, {} when there is none, None when the file there is
        not ours."""
        try:
            doc = json.loads(self.manifest.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("written_by") != _WRITTEN_BY \
                or not isinstance(doc.get("files"), dict):
            return None
        return doc["files"]

    def record(self, written: Iterable[Path]) -> None:
        """Add the files just written to the manifest (after they were written: a file
        the manifest misses is only ever refused, never lost)."""
        from annotator.core.formats._common import atomic_write_json
        files = self._read_manifest() or {}
        for path in written:
            path = Path(os.path.abspath(path))
            files[self._name(path)] = {"format": self.format_name, "sha256": _sha256(path)}
        atomic_write_json(self.manifest, {"written_by": _WRITTEN_BY, "files": files},
                          indent=1)


def _more(n: int) -> str:
    return f" (and {n} more)" if n else ""
