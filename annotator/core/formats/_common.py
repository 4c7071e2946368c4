"""Helpers shared by the format readers and writers: strict JSON field access that
raises FormatError naming the file, the record and the problem; image paths that must
stay inside the image root; checks of the image files themselves; atomic writes."""
from __future__ import annotations

import json
import math
import os
import posixpath
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from annotator.core.dataset import ImageRecord
from annotator.core.errors import FormatError, ImageLoadError

# Largest image side we accept from a dataset file: bigger values are almost always
# corrupt and would make every mask decode allocate gigabytes.
MAX_SIDE = 100_000
MAX_PIXELS = 1 << 31

_MISSING: Any = object()

def finite(v: int | float) -> bool:
    """math.isfinite, but False (not OverflowError) for an int beyond float range."""
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


# name -> (test, words for the message)
_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "int": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "number": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
               and finite(v), "a finite number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
}


def json_kind(value: Any) -> str:
    """How a JSON value is described in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class Fields:
    """Typed access to one JSON object of a dataset file; every problem is a FormatError
    naming `path` and `record` (e.g. "annotation id 7")."""

    def __init__(self, obj: Any, path: Any, record: str | None):
        self.path, self.record = path, record
        if not isinstance(obj, dict):
            self.fail(f"expected a JSON object, found {json_kind(obj)}")
        self.obj: dict[str, Any] = obj

    def fail(self, problem: str) -> FormatError:
        raise FormatError(self.path, problem, self.record)

    def get(self, key: str, kind: str, default: Any = _MISSING, *, nullable: bool = False) -> Any:
        """The value of `key`, which must be of `kind` ("int", "number", "str", "bool",
        "list", "dict"); `default` when absent (absent without a default is an error);
        None is accepted only when `nullable` (and then means `default`, if any)."""
        if key not in self.obj:
            if default is _MISSING:
                self.fail(f"missing key {key!r}")
            return default
        value = self.obj[key]
        if value is None and nullable:
            return None if default is _MISSING else default
        test, words = _KINDS[kind]
        if not test(value):
            self.fail(f"{key!r} must be {words}, found {json_kind(value)}")
        return value

    def positive_int(self, key: str, limit: int = MAX_SIDE) -> int:
        value = self.get(key, "int")
        if not 0 < value <= limit:
            self.fail(f"{key!r} must be between 1 and {limit}, found {value}")
        return value


def load_json(path: Path) -> Any:
    """Parse a JSON file; a missing, unreadable or malformed file is a FormatError."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise FormatError(path, "file not found") from None
    except IsADirectoryError:
        raise FormatError(path, "is a folder, expected a JSON file") from None
    except OSError as exc:
        raise FormatError(path, f"cannot be read: {exc.strerror or exc}") from None
    if not data.strip():
        raise FormatError(path, "file is empty, expected JSON")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError(path, f"not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise FormatError(path, f"malformed JSON at line {exc.lineno} column {exc.colno}: "
                                f"{exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise FormatError(path, f"malformed JSON: {exc}") from None


def _reject_constant(name: str) -> Any:
    # NaN / Infinity are not JSON; Python would accept them silently.
    raise ValueError(f"{name} is not valid JSON")


def record_name(kind: str, obj: Any, index: int) -> str:
    """ "annotation id 7" when the object has an integer id, else "annotations[3]"."""
    if isinstance(obj, dict):
        oid = obj.get("id")
        if isinstance(oid, int) and not isinstance(oid, bool):
            return f"{kind} id {oid}"
    return f"{kind}s[{index}]"


_DRIVE = re.compile(r"^[A-Za-z]:")


def file_name_problem(name: str) -> str | None:
    """Why `name` cannot be a path relative to the image root (None when it can)."""
    if not name or not name.strip():
        return "file name is empty"
    if "\x00" in name:
        return "file name contains a NUL character"
    posix = name.replace("\\", "/")
    if posix.startswith("/") or _DRIVE.match(posix):
        return f"file name {name!r} is an absolute path; it must be relative to the image root"
    norm = posixpath.normpath(posix)
    if norm == ".." or norm.startswith("../"):
        return f"file name {name!r} escapes the image root"
    if norm in (".", ""):
        return f"file name {name!r} names the image root itself, not a file"
    return None


def normalize_file_name(name: str, path: Any, record: str) -> str:
    """`name` as a clean relative posix path inside the image root, else FormatError."""
    problem = file_name_problem(name)
    if problem:
        raise FormatError(path, problem, record)
    return posixpath.normpath(name.replace("\\", "/"))


def relative_to_root(file: Path, image_root: Path, path: Any, record: str) -> str:
    """The image-root-relative name of `file` (an absolute or cwd-relative path)."""
    root = Path(os.path.abspath(image_root))
    target = Path(os.path.abspath(file))
    try:
        rel = target.relative_to(root).as_posix()
    except ValueError:
        raise FormatError(path, f"image {target} is outside the image root {root}",
                          record) from None
    return normalize_file_name(rel, path, record)


def check_image_files(images: Iterable[ImageRecord], image_root: Path, path: Any) -> None:
    """Every image must exist under `image_root` (symlinks may not lead out of it), be
    readable and whole, and have the size the dataset says; fills sha256 and
    orientation. Big datasets check their images in worker processes."""
    from annotator.core.formats._parallel import parallel_map
    images = list(images)
    root = str(Path(image_root).resolve())
    jobs = [(root, img.file_name, img.width, img.height, img.id, str(path)) for img in images]
    for img, (sha256, orientation) in zip(images, parallel_map(_check_image_job, jobs)):
        img.sha256 = sha256 or img.sha256
        img.orientation = orientation or img.orientation


def _check_image_job(job: tuple[str, str, int, int, int, str]) -> tuple[str, int]:
    from annotator.core.images import outside_root_problem, read_image_info
    root_text, name, width, height, image_id, path = job
    root = Path(root_text)
    record = f"image id {image_id} ({name})" if image_id else f"image {name!r}"
    file = root / name
    if not file.is_file():
        raise FormatError(path, f"image file {file} does not exist", record)
    if problem := outside_root_problem(file, root):
        raise FormatError(path, problem, record)
    try:
        info = read_image_info(file)
        check_complete(file)
    except ImageLoadError as exc:
        raise FormatError(path, f"image cannot be read: {exc}", record) from None
    if (info.width, info.height) != (width, height):
        raise FormatError(path, f"size {width}x{height} disagrees with the image file, "
                                f"which is {info.width}x{info.height}", record)
    return info.sha256, info.orientation


_JPEG_END = b"\xff\xd9"
_PNG_END = b"IEND\xaeB`\x82"


def check_complete(file: Path) -> None:
    """ImageLoadError when the image file is cut short. The header alone does not tell,
    and decoding every image of a large import is slow, so JPEG and PNG are judged by
    their end marker (EOI, IEND); only when that is missing (or for other formats) is
    the image decoded in full to decide."""
    try:
        with open(file, "rb") as fh:
            head = fh.read(8)
            fh.seek(0, os.SEEK_END)
            fh.seek(max(fh.tell() - 64, 0))
            tail = fh.read()
    except OSError as exc:
        raise ImageLoadError(f"{file}: cannot read the file ({exc.strerror or exc})") from None
    if head.startswith(b"\xff\xd8") and tail.rstrip(b"\0\r\n ").endswith(_JPEG_END):
        return
    if head.startswith(b"\x89PNG") and tail.endswith(_PNG_END):
        return
    from annotator.core.images import load_image
    load_image(file)      # raises ImageLoadError for a truncated or damaged file


def check_size(width: int, height: int, path: Any, record: str) -> None:
    if width * height > MAX_PIXELS:
        raise FormatError(path, f"image size {width}x{height} is too large "
                                f"(more than {MAX_PIXELS} pixels)", record)


# ---- atomic writes ---------------------------------------------------------------------

# A writer's `check_paths(paths)`: sees every path before the first write; raising
# stops the export with nothing written (core.export_guard.ExportGuard.check).
PathCheck = Callable[[Sequence[Path]], None]


def check_destinations(check_paths: PathCheck | None, paths: Sequence[Path]) -> None:
    if check_paths is not None:
        check_paths(list(paths))


_UMASK = os.umask(0)
os.umask(_UMASK)

def atomic_write_bytes(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write `data` to a temp file beside `path`, then rename it over `path`: readers
    see the old file or the whole new one, never half of it. `fsync=False` (for the
    thousands of small files of a multi-file export) keeps that promise against a killed
    process but not against a power cut."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:   # name the file we meant to write, not a temp name
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)   # mkstemp makes 0600; exports are shared files
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


def atomic_write_text(path: Path, text: str, *, fsync: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_json(path: Path, obj: Any, *, indent: int | None = None,
                      fsync: bool = True) -> None:
    text = json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False,
                      separators=None if indent else (",", ":"))
    atomic_write_text(path, text + "\n", fsync=fsync)
