"""The catalogue of official checkpoints (resources/models.json) and the models folder.

Nothing here touches the network: downloading lives in engines/files/downloader.py and happens
only when a user asks for it. Hashing happens only in `verify`, which reads whole files;
everything else is a cheap stat() so the router can call it on every request.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable

from engines import manifest
from engines.types import CheckpointError, EngineError

ENV_MODELS_DIR = "ANNOTATOR_MODELS_DIR"
APP_NAME = "sam-annotator"

_HEX = re.compile(r"^[0-9a-f]+$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9.+_-]*$")
_REQUIRED = ("name", "engine", "arch", "filename", "url", "license", "description")
_OPTIONAL = ("size", "sha256", "sha256_prefix", "md5", "config", "note")

Progress = Callable[[int, int | None], None]   # (bytes done, total or None)


class CatalogueError(EngineError):
    """resources/models.json (or a catalogue file given instead) is missing or malformed."""


@dataclass(frozen=True)
class ModelEntry:
    name: str                         # short id used on the command line, e.g. "sam-vit-b"
    engine: str                       # "sam" | "sam2" | "hq-sam"
    arch: str                         # builder key, e.g. "vit_b", "hiera_t", "vit_tiny"
    filename: str                     # plain file name inside the models folder
    url: str                          # https download address
    size: int | None = None           # bytes, None where the publisher gives none
    sha256: str | None = None         # full lowercase hex digest
    sha256_prefix: str | None = None  # leading hex digits, where only those are known
    md5: str | None = None            # full lowercase hex digest (SAM 1 names carry its prefix)
    license: str = ""
    description: str = ""
    config: str | None = None         # SAM 2 hydra config name
    note: str | None = None           # why a size or hash is missing, etc.

    @property
    def size_mb(self) -> float | None:
        return None if self.size is None else self.size / 1e6

    @property
    def has_hash(self) -> bool:
        return bool(self.sha256 or self.sha256_prefix or self.md5)


def _catalogue_text(path: str | Path | None) -> tuple[str, str]:
    if path is not None:
        where = str(path)
        try:
            return Path(path).read_text(encoding="utf-8"), where
        except OSError as exc:
            raise CatalogueError(f"cannot read model catalogue {where}: {exc.strerror or exc}") from exc
    ref = resources.files("resources").joinpath("models.json")
    where = "resources/models.json"
    try:
        return ref.read_text(encoding="utf-8"), where
    except OSError as exc:
        raise CatalogueError(f"cannot read model catalogue {where}: {exc}") from exc


def _check_hex(value: Any, field: str, length: int | None, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _HEX.match(value):
        raise CatalogueError(f"{where}: '{field}' must be lowercase hex or null, got {value!r}")
    if length is not None and len(value) != length:
        raise CatalogueError(f"{where}: '{field}' must have {length} hex digits, got {len(value)}")
    return value


def _parse_entry(raw: Any, index: int, source: str) -> ModelEntry:
    where = f"{source} entry #{index}"
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where}: expected an object, got {type(raw).__name__}")
    if isinstance(raw.get("name"), str):
        where = f"{source} entry '{raw['name']}'"
    unknown = set(raw) - set(_REQUIRED) - set(_OPTIONAL)
    if unknown:
        raise CatalogueError(f"{where}: unknown field(s) {sorted(unknown)}")
    for key in _REQUIRED:
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise CatalogueError(f"{where}: '{key}' must be a non-empty string")
    if not _NAME.match(raw["name"]):
        raise CatalogueError(f"{where}: name may use only a-z, 0-9 and . + _ -")
    engines = [info.name for info in manifest.list_engines(catalogued=True)]
    if raw["engine"] not in engines:
        raise CatalogueError(f"{where}: engine {raw['engine']!r} is not one of {engines}")
    filename = raw["filename"]
    # A file name, never a path: downloads must stay inside the models folder.
    if Path(filename).name != filename or filename in (".", "..") or "\\" in filename:
        raise CatalogueError(f"{where}: filename {filename!r} must be a plain file name")
    if not raw["url"].startswith("https://"):
        raise CatalogueError(f"{where}: url must start with https://, got {raw['url']!r}")
    size = raw.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size <= 0):
        raise CatalogueError(f"{where}: size must be a positive number of bytes or null, got {size!r}")
    sha256 = _check_hex(raw.get("sha256"), "sha256", 64, where)
    prefix = _check_hex(raw.get("sha256_prefix"), "sha256_prefix", None, where)
    if prefix is not None and not 4 <= len(prefix) < 64:
        raise CatalogueError(f"{where}: sha256_prefix must have 4 to 63 hex digits")
    if sha256 and prefix and not sha256.startswith(prefix):
        raise CatalogueError(f"{where}: sha256_prefix {prefix} does not match sha256 {sha256}")
    md5 = _check_hex(raw.get("md5"), "md5", 32, where)
    config = raw.get("config")
    if raw["engine"] == "sam2" and not (isinstance(config, str) and config.endswith(".yaml")):
        raise CatalogueError(f"{where}: a sam2 entry needs 'config', the hydra .yaml name")
    if config is not None and not isinstance(config, str):
        raise CatalogueError(f"{where}: config must be a string or null")
    note = raw.get("note")
    if note is not None and not isinstance(note, str):
        raise CatalogueError(f"{where}: note must be a string or null")
    return ModelEntry(name=raw["name"], engine=raw["engine"], arch=raw["arch"],
                      filename=filename, url=raw["url"], size=size, sha256=sha256,
                      sha256_prefix=prefix, md5=md5, license=raw["license"],
                      description=raw["description"], config=config, note=note)


def load_catalogue(path: str | Path | None = None) -> list[ModelEntry]:
    """Read and validate the catalogue (the shipped one unless `path` is given)."""
    text, source = _catalogue_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogueError(f"model catalogue {source} is not valid JSON: {exc}") from exc
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list) or not models:
        raise CatalogueError(f"model catalogue {source} needs a non-empty 'models' list")
    entries = [_parse_entry(raw, i, source) for i, raw in enumerate(models)]
    for field in ("name", "filename"):
        seen: set[str] = set()
        for entry in entries:
            value = getattr(entry, field)
            if value in seen:
                raise CatalogueError(f"model catalogue {source}: {field} {value!r} appears twice")
            seen.add(value)
    return entries


def get_entry(name: str, entries: Iterable[ModelEntry] | None = None) -> ModelEntry:
    entries = list(load_catalogue() if entries is None else entries)
    for entry in entries:
        if entry.name == name:
            return entry
    known = ", ".join(e.name for e in entries)
    raise EngineError(f"unknown model {name!r}; known models: {known}")


def models_dir(override: str | Path | None = None) -> Path:
    """The models folder: `override` (a --models-dir flag), else $ANNOTATOR_MODELS_DIR,
    else the per-user data folder. Not created here; download() creates it."""
    if override is not None and str(override).strip():
        return Path(override).expanduser()
    env = os.environ.get(ENV_MODELS_DIR, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs  # imported late: only needed when nothing overrides it
    return Path(platformdirs.user_data_dir(APP_NAME)) / "models"


def model_path(entry: ModelEntry, directory: str | Path | None = None) -> Path:
    return models_dir(directory) / entry.filename


def is_installed(entry: ModelEntry, directory: str | Path | None = None) -> bool:
    """File present and, where the size is known, complete. No hashing (fast)."""
    path = model_path(entry, directory)
    try:
        stat = path.stat()
    except OSError:
        return False
    if not path.is_file():
        return False
    return stat.st_size == entry.size if entry.size is not None else stat.st_size > 0


def installed(directory: str | Path | None = None,
              entries: Iterable[ModelEntry] | None = None) -> list[tuple[ModelEntry, Path]]:
    entries = load_catalogue() if entries is None else entries
    return [(e, model_path(e, directory)) for e in entries if is_installed(e, directory)]


def find_checkpoint(engine: str, arch: str | None = None, directory: str | Path | None = None,
                    entries: Iterable[ModelEntry] | None = None) -> tuple[ModelEntry, Path] | None:
    """The first installed checkpoint for `engine` (and `arch`), in catalogue order, which
    runs small to large so a CPU gets the fastest one. None if none is installed."""
    entries = list(load_catalogue() if entries is None else entries)
    candidates = [e for e in entries if e.engine == engine]
    if not candidates:
        known = sorted({e.engine for e in entries})
        raise EngineError(f"no checkpoints are catalogued for engine {engine!r}; engines: {known}")
    if arch is not None:
        archs = [e.arch for e in candidates]
        candidates = [e for e in candidates if e.arch == arch]
        if not candidates:
            raise EngineError(f"engine {engine!r} has no catalogued arch {arch!r}; archs: {archs}")
    for entry in candidates:
        if is_installed(entry, directory):
            return entry, model_path(entry, directory)
    return None


def file_digests(path: Path, progress: Progress | None = None,
                 chunk_size: int = 1 << 20) -> tuple[int, str, str]:
    """(size, sha256 hex, md5 hex) of a file, read once."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    total = path.stat().st_size
    done = 0
    with path.open("rb") as fh:
        while chunk := fh.read(chunk_size):
            sha.update(chunk)
            md5.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return done, sha.hexdigest(), md5.hexdigest()


def check_digests(name: str, size: int, sha256: str, md5: str, *, expected_size: int | None,
                  expected_sha256: str | None, expected_prefix: str | None,
                  expected_md5: str | None) -> list[str]:
    """Human-readable mismatches (empty when all the known facts agree)."""
    problems = []
    if expected_size is not None and size != expected_size:
        problems.append(f"{name}: size is {size} bytes, expected {expected_size}")
    if expected_sha256 and sha256 != expected_sha256.lower():
        problems.append(f"{name}: SHA-256 is {sha256}, expected {expected_sha256.lower()}")
    if expected_prefix and not sha256.startswith(expected_prefix.lower()):
        problems.append(f"{name}: SHA-256 is {sha256}, expected one starting with "
                        f"{expected_prefix.lower()}")
    if expected_md5 and md5 != expected_md5.lower():
        problems.append(f"{name}: MD5 is {md5}, expected {expected_md5.lower()}")
    return problems


def verify(entry: ModelEntry, path: str | Path, progress: Progress | None = None) -> None:
    """Raise CheckpointError unless `path` has the entry's size and hashes (those known)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found (model {entry.name})")
    actual_size = path.stat().st_size
    if entry.size is not None and actual_size != entry.size:
        # A wrong size settles it; no need to hash gigabytes.
        raise CheckpointError(f"{path.name}: size is {actual_size} bytes, expected {entry.size}"
                              f" (incomplete or a different file)")
    if not entry.has_hash:
        return
    size, sha256, md5 = file_digests(path, progress)
    problems = check_digests(path.name, size, sha256, md5, expected_size=entry.size,
                             expected_sha256=entry.sha256, expected_prefix=entry.sha256_prefix,
                             expected_md5=entry.md5)
    if problems:
        raise CheckpointError("; ".join(problems) + " (corrupt or a different file)")
