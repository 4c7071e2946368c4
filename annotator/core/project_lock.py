"""Who is writing a project: a lock file beside it, `<project>.lock`.

The file holds one JSON object: the writer's process id, host name, start time and a
random token that tells two openings apart (even two in one process). A writer takes it
when it opens the project and gives it back when it closes. A lock is stale, and taken
without asking, when its process is gone: same host and no process with that id (or a
file that is not a lock, e.g. cut short by a crash); on Linux a process that merely
reuses the dead holder's pid is told apart by its start time. On another host (and on
Windows) the process cannot be checked, so such a lock holds until someone takes it over.

"Take over" replaces a live holder's lock with ours. The holder finds out at its next
change: `ProjectLock.check()` (called by the store before every write) sees another
token and refuses, so its change is not saved and it is told why; nothing it had
saved before is touched.

Reads and writes of the file happen under an advisory `flock` on the file itself (held
for microseconds, never while the project is open), so two processes cannot both think
they took a free lock. Without `fcntl` (Windows) the same steps run unguarded.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from annotator.core.errors import ProjectError

try:
    import fcntl
except ImportError:      # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_SUFFIX = ".lock"


def lock_path(project: str | os.PathLike) -> Path:
    return Path(f"{Path(project).absolute()}{LOCK_SUFFIX}")


def _process_start(pid: int) -> str:
    """When process `pid` started (Linux: clock ticks since boot, /proc/PID/stat field
    22), to tell a live holder from a new process that got a dead one's pid; "" where
    that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError, UnicodeDecodeError):
        return ""


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    since: float         # unix seconds
    token: str
    started: str = ""    # _process_start(pid) when the lock was taken

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"process {self.pid} on {self.host} (since {when})"

    def is_alive(self) -> bool:
        """False only when we can tell the process is gone (same host, no such pid)."""
        if self.host != socket.gethostname():
            return True
        if self.pid == os.getpid():
            return True
        if os.name == "nt":    # os.kill would terminate it there: assume it runs
            return True
        if self.started and _process_start(self.pid) not in ("", self.started):
            return False       # the pid now belongs to another process
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:     # exists, owned by another user
            return True
        except OSError:
            return True
        return True


class ProjectInUseError(ProjectError):
    """The project has a live writer; `holder` says who."""

    def __init__(self, project: Path, holder: LockHolder):
        self.project, self.holder = project, holder
        super().__init__(f"{project}: the project is in use by {holder.describe()}; "
                         "close it there first")


class LockLostError(ProjectError):
    """Our lock was taken over (or removed) by someone else."""


@contextmanager
def _guard(path: Path, exclusive: bool, create: bool = True) -> Iterator[int]:
    """The lock file open under a short flock. A file that was unlinked while we
    waited for the flock (its holder released it) is left for the one now at the path."""
    while True:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                yield fd
                return
        finally:
            os.close(fd)          # also releases the flock


def _read(fd: int) -> LockHolder | None:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    try:
        doc = json.loads(data.decode("utf-8"))
        return LockHolder(int(doc["pid"]), str(doc["host"]), float(doc["since"]),
                          str(doc["token"]), str(doc.get("started", "")))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None          # empty or cut short: no holder


def _write(fd: int, holder: LockHolder) -> None:
    data = json.dumps({"pid": holder.pid, "host": holder.host, "since": holder.since,
                       "token": holder.token, "started": holder.started}).encode("utf-8")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)
    os.fsync(fd)


def current_holder(project: str | os.PathLike) -> LockHolder | None:
    """The live writer of `project`, or None when there is none (or only a stale lock)."""
    path = lock_path(project)
    if not path.exists():
        return None
    try:
        with _guard(path, exclusive=False) as fd:
            holder = _read(fd)
    except OSError:
        return None
    return holder if holder is not None and holder.is_alive() else None


class ProjectLock:
    """Our hold on one project's lock file. `acquire` takes it, `check` confirms we
    still have it, `release` gives it back (only if it is still ours)."""

    def __init__(self, project: Path, holder: LockHolder):
        self.project, self.holder = project, holder
        self.path = lock_path(project)
        self._released = False

    @classmethod
    def acquire(cls, project: str | os.PathLike, *, take_over: bool = False) -> ProjectLock:
        project = Path(project).absolute()
        mine = LockHolder(os.getpid(), socket.gethostname(), time.time(),
                          secrets.token_hex(8), _process_start(os.getpid()))
        path = lock_path(project)
        try:
            with _guard(path, exclusive=True) as fd:
                other = _read(fd)
                if other is not None and other.is_alive() and not take_over:
                    raise ProjectInUseError(project, other)
                _write(fd, mine)
        except OSError as exc:
            raise ProjectError(f"{project}: cannot take the project lock {path}: "
                               f"{exc.strerror or exc}") from exc
        return cls(project, mine)

    def check(self) -> None:
        """LockLostError when another writer took the project over since we opened it."""
        if self._released:
            raise LockLostError(f"{self.project}: the project was closed")
        try:
            with _guard(self.path, exclusive=False, create=False) as fd:
                now = _read(fd)
        except FileNotFoundError:
            now = None
        except OSError as exc:
            raise LockLostError(f"{self.project}: cannot read the project lock "
                                f"{self.path}: {exc.strerror or exc}") from exc
        if now is None or now.token != self.holder.token:
            who = now.describe() if now is not None else "someone who removed the lock"
            raise LockLostError(f"{self.project}: the project was taken over by {who}; "
                                "this change was not saved (reopen the project to go on)")

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        try:
            with _guard(self.path, exclusive=True) as fd:
                now = _read(fd)
                if now is not None and now.token == self.holder.token:
                    os.unlink(self.path)     # under the flock: no one reads it half-gone
        except OSError:
            pass       # a lock we cannot remove is stale once we exit
