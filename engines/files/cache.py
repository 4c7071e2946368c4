"""Embedding cache: an image seen before never re-runs the encoder, across restarts too.

Two levels:
- `MemoryCache`: LRU bounded by the bytes the embeddings hold (not by count), thread-safe,
  keeps the `Embedding` objects as the engine made them (tensors may stay on the GPU).
- `DiskCache`: one safetensors file per embedding, keyed by image content hash + backbone
  (which includes the checkpoint identity) + model input size. Every load is verified
  (format version, key fields, checksum of the tensor bytes); a stale or corrupt file is
  logged, deleted and reported as a miss, never trusted and never raised.

`EmbeddingCache` puts the two together behind `get_or_compute(key, compute)`.

Sizes are in MiB (2**20 bytes). Cached `Embedding`s are shared: callers must not mutate them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load as load_bytes, save as save_bytes

from engines.types import Embedding, EngineError, ImageError

log = logging.getLogger(__name__)

MIB = 1 << 20
FORMAT_NAME = "sam-annotator-embedding"
FORMAT_VERSION = "1"
SUFFIX = ".safetensors"
_TMP_SUFFIX = ".part"
_STALE_TMP_AGE_S = 3600.0   # older temp files are leftovers of a crashed writer
ENV_CACHE_DIR = "ANNOTATOR_CACHE_DIR"


class CacheError(EngineError):
    """The cache directory cannot be used (not a directory, not writable)."""


def default_cache_dir() -> Path:
    """`$ANNOTATOR_CACHE_DIR` if set, else the user's cache folder + /embeddings."""
    override = os.environ.get(ENV_CACHE_DIR, "").strip()
    if override:
        return Path(override).expanduser()
    import platformdirs  # only needed for the default location
    return Path(platformdirs.user_cache_dir("sam-annotator")) / "embeddings"


def image_digest(image: np.ndarray) -> str:
    """sha256 of shape, dtype and pixel bytes: the same pixels give the same key."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"image_digest needs a numpy array, got {type(image).__name__}")
    if image.dtype == object:
        raise ImageError("image_digest cannot hash an object-dtype array")
    h = hashlib.sha256()
    h.update(f"{image.shape}|{image.dtype.str}|".encode())
    h.update(np.ascontiguousarray(image).reshape(-1).view(np.uint8))
    return h.hexdigest()


@dataclass(frozen=True)
class CacheKey:
    image_digest: str     # image_digest(pixels), or a caller's own content hash of the file
    backbone_key: str     # engine backbone id incl. checkpoint identity, e.g. "sam:vit_b:01ec64"
    input_size: int       # model input side, e.g. 1024

    def __post_init__(self):
        for name in ("image_digest", "backbone_key"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"CacheKey.{name} must be a non-empty string, got {value!r}")
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, int) \
                or self.input_size <= 0:
            raise ValueError(f"CacheKey.input_size must be a positive int, got {self.input_size!r}")

    def filename(self) -> str:
        """A file-system-safe name; hashing the fields keeps odd characters out of paths."""
        text = json.dumps([self.image_digest, self.backbone_key, self.input_size])
        return hashlib.sha256(text.encode()).hexdigest()[:40] + SUFFIX


def _check_mb(name: str, value: float | None, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number of MiB >= 0, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------- memory


class MemoryCache:
    """LRU of embeddings bounded by their total `nbytes`; safe to share between threads."""

    def __init__(self, max_mb: float):
        self.max_bytes = int(_check_mb("MemoryCache max_mb", max_mb, False) * MIB)
        self._items: OrderedDict[CacheKey, tuple[Embedding, int]] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()

    def get(self, key: CacheKey) -> Embedding | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: CacheKey, emb: Embedding) -> bool:
        """Store (replacing any old entry); False when `emb` alone exceeds the budget."""
        size = emb.nbytes
        with self._lock:
            self._pop(key)
            if size > self.max_bytes:
                return False
            while self._items and self._used + size > self.max_bytes:
                self._pop(next(iter(self._items)))
            self._items[key] = (emb, size)
            self._used += size
            return True

    def _pop(self, key: CacheKey) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._used -= item[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._used = 0

    def __contains__(self, key: CacheKey) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return self._used


# ---------------------------------------------------------------------------- disk


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    """The raw bytes of a contiguous CPU tensor, whatever its dtype (bf16 included)."""
    return memoryview(t.reshape(-1).view(torch.uint8).numpy())


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    """crc32 over names, dtypes, shapes and bytes; detects any flipped byte or edited header."""
    crc = 0
    for name in sorted(tensors):
        t = tensors[name]
        crc = zlib.crc32(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode(), crc)
        crc = zlib.crc32(_tensor_bytes(t), crc)
    return f"{crc:08x}"


class _BadFile(Exception):
    """Internal: the file on disk is stale or corrupt (the message says which and why)."""


def _read_header(data: bytes) -> dict:
    """Parse the safetensors header (8-byte little-endian length, then JSON)."""
    if len(data) < 8:
        raise _BadFile(f"corrupt: {len(data)} bytes, shorter than a safetensors header")
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or 8 + n > len(data):
        raise _BadFile(f"corrupt: header length {n} does not fit a {len(data)}-byte file")
    header = json.loads(data[8:8 + n])   # ValueError on garbage: reported as corrupt
    if not isinstance(header, dict):
        raise _BadFile("corrupt: header is not a JSON object")
    return header


class DiskCache:
    """One safetensors file per embedding in `directory`, optionally bounded to `max_mb`.

    Stores tensor features only, each in its own dtype (no downcast, so masks equal a fresh
    encode's). Embeddings that carry pixels (`Embedding.image` is not None, e.g. the classic
    engine's) are refused: a disk hit must never return an embedding missing what its engine
    needs, and such engines are cheap to re-run. Numpy features are stored and come back as
    numpy. Loaded tensors are contiguous CPU tensors; engines move them to their device.
    """

    def __init__(self, directory: Path | str, max_mb: float | None = None):
        self.directory = Path(directory).expanduser()
        self.max_bytes = None if max_mb is None else \
            int(_check_mb("DiskCache max_mb", max_mb, True) * MIB)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"embedding cache folder {self.directory} cannot be created: "
                             f"{exc.strerror or exc}") from None
        if not self.directory.is_dir():
            raise CacheError(f"embedding cache folder {self.directory} is not a directory")
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise CacheError(f"embedding cache folder {self.directory} is not writable")
        self._lock = threading.Lock()   # serialises deletes and eviction within this process
        self._remove_stale_temp_files()

    def path_for(self, key: CacheKey) -> Path:
        return self.directory / key.filename()

    # -- reading

    def get(self, key: CacheKey) -> Embedding | None:
        """The stored embedding, or None when absent, stale or corrupt (then the file is gone)."""
        path = self.path_for(key)
        try:
            with open(path, "rb") as f:
                identity = _identity(os.fstat(f.fileno()))
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("embedding cache: cannot read %s (%s); ignoring it", path, exc)
            return None
        try:
            emb = self._decode(key, data)
        except Exception as exc:  # never trust, never raise: any defect means recompute
            reason = str(exc) if isinstance(exc, _BadFile) else f"corrupt: {exc!r}"
            log.warning("embedding cache: %s is %s; deleting it", path.name, reason)
            self._delete_if_unchanged(path, identity)
            return None
        try:
            os.utime(path)   # mtime = last use, so eviction drops the least recently used
        except OSError:
            pass
        return emb

    def _decode(self, key: CacheKey, data: bytes) -> Embedding:
        meta = _read_header(data).get("__metadata__")
        if not isinstance(meta, dict):
            raise _BadFile("corrupt: no metadata")
        if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
            raise _BadFile(f"stale: format {meta.get('format')!r} version "
                           f"{meta.get('version')!r}, expected {FORMAT_NAME!r} {FORMAT_VERSION!r}")
        expected = {"image_digest": key.image_digest, "backbone_key": key.backbone_key,
                    "key_input_size": str(key.input_size)}
        for field_name, want in expected.items():
            if meta.get(field_name) != want:
                raise _BadFile(f"stale: {field_name} is {meta.get(field_name)!r}, "
                               f"expected {want!r}")
        tensors = load_bytes(data)   # copies into fresh, writable, contiguous CPU tensors
        if _checksum(tensors) != meta.get("checksum"):
            raise _BadFile("corrupt: checksum of the tensor data does not match")
        numpy_names = set(json.loads(meta["numpy_features"]))
        features = {name: (t.numpy() if name in numpy_names else t)
                    for name, t in tensors.items()}
        user_meta = json.loads(meta["meta"])
        if not isinstance(user_meta, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in user_meta.items()):
            raise _BadFile("corrupt: meta is not a str -> str mapping")
        return Embedding(backbone_key=key.backbone_key,
                         image_size=_pair(meta["image_size"]),
                         input_size=_pair(meta["input_size"]),
                         features=features, image=None, meta=user_meta)

    # -- writing

    def put(self, key: CacheKey, emb: Embedding) -> bool:
        """Write atomically; False (and nothing written) when refused or over the budget."""
        if emb.image is not None:
            log.debug("embedding cache: %s carries pixels; not stored on disk", key.backbone_key)
            return False
        if emb.backbone_key != key.backbone_key:
            raise ValueError(f"embedding of backbone {emb.backbone_key!r} cannot be stored "
                             f"under key backbone {key.backbone_key!r}")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in emb.meta.items()):
            raise ValueError(f"Embedding.meta must map str to str, got {emb.meta!r}")
        tensors, numpy_names = _to_cpu_tensors(emb.features)
        metadata = {
            "format": FORMAT_NAME, "version": FORMAT_VERSION,
            "image_digest": key.image_digest, "backbone_key": key.backbone_key,
            "key_input_size": str(key.input_size),
            "image_size": json.dumps([int(v) for v in emb.image_size]),
            "input_size": json.dumps([int(v) for v in emb.input_size]),
            "meta": json.dumps(dict(emb.meta)),
            "numpy_features": json.dumps(sorted(numpy_names)),
            "checksum": _checksum(tensors),
        }
        blob = save_bytes(tensors, metadata=metadata)
        if self.max_bytes is not None and len(blob) > self.max_bytes:
            return False
        path = self.path_for(key)
        tmp = self.directory / f".{path.name}.{uuid.uuid4().hex}{_TMP_SUFFIX}"
        try:
            with open(tmp, "wb") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)   # atomic: readers see the old file or the whole new one
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.max_bytes is not None:
            self._evict(keep=path)
        return True

    # -- housekeeping

    def _entries(self) -> list[tuple[int, int, Path]]:
        """(mtime_ns, size, path) of every cache file; files vanishing meanwhile are skipped."""
        out = []
        for p in self.directory.glob("*" + SUFFIX):
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((st.st_mtime_ns, st.st_size, p))
        return out

    def used_bytes(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def __len__(self) -> int:
        return len(self._entries())

    def clear(self) -> None:
        with self._lock:
            for _, _, p in self._entries():
                p.unlink(missing_ok=True)

    def _evict(self, keep: Path) -> None:
        """Delete least recently used files (oldest mtime) until the folder fits `max_bytes`."""
        with self._lock:
            entries = sorted(self._entries(), key=lambda e: e[0])
            total = sum(size for _, size, _ in entries)
            for _, size, p in entries:
                if total <= self.max_bytes:
                    break
                if p != keep:
                    p.unlink(missing_ok=True)
                    total -= size

    def _delete_if_unchanged(self, path: Path, identity: tuple) -> None:
        """Delete a bad file unless another writer has just replaced it with a new one."""
        with self._lock:
            try:
                if _identity(os.stat(path)) == identity:
                    path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("embedding cache: cannot delete %s (%s)", path, exc)

    def _remove_stale_temp_files(self) -> None:
        cutoff = time.time() - _STALE_TMP_AGE_S
        for p in self.directory.glob(".*" + _TMP_SUFFIX):
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
            except OSError:
                pass


def _identity(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _pair(text: str) -> tuple[int, int]:
    value = json.loads(text)
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value)):
        raise _BadFile(f"corrupt: size {text!r} is not a pair of ints")
    return int(value[0]), int(value[1])


def _to_cpu_tensors(features: dict) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Contiguous CPU tensors in their own dtype; numpy features are remembered by name."""
    tensors: dict[str, torch.Tensor] = {}
    numpy_names: set[str] = set()
    seen_storage: set[int] = set()
    for name, value in features.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"feature name {name!r} cannot be stored on disk")
        if isinstance(value, torch.Tensor):
            t = value.detach().to("cpu").contiguous()
        elif isinstance(value, np.ndarray):
            arr = np.ascontiguousarray(value)
            if not arr.flags.writeable:   # torch.from_numpy warns on read-only arrays
                arr = arr.copy()
            t = torch.from_numpy(arr)   # TypeError for dtypes torch lacks
            numpy_names.add(name)
        else:
            raise TypeError(f"feature {name!r} is a {type(value).__name__}, "
                            "not a torch.Tensor or numpy array")
        ptr = t.untyped_storage().data_ptr()
        if ptr and ptr in seen_storage:   # safetensors refuses tensors sharing memory
            t = t.clone()
        seen_storage.add(t.untyped_storage().data_ptr())
        tensors[name] = t
    return tensors, numpy_names


# ---------------------------------------------------------------------------- both levels


@dataclass
class CacheStats:
    memory_hits: int = 0
    memory_misses: int = 0
    disk_hits: int = 0
    disk_misses: int = 0      # disk enabled and looked up, nothing usable there
    computed: int = 0
    disk_write_errors: int = 0


class EmbeddingCache:
    """Memory LRU in front of a disk cache; `get_or_compute` runs the encoder only on a miss.

    `disk_dir=None` uses `default_cache_dir()`; `disk=False` keeps everything in memory.
    Concurrent calls for the same key compute once: the later caller waits for the first.
    """

    def __init__(self, memory_mb: float = 1024, disk_dir: Path | str | None = None,
                 disk_mb: float | None = None, *, disk: bool = True):
        self.memory = MemoryCache(memory_mb)
        self.disk: DiskCache | None = None
        if disk and disk_dir is not None:
            self.disk = DiskCache(disk_dir, disk_mb)   # the caller's folder: errors are theirs
        elif disk:
            try:
                self.disk = DiskCache(default_cache_dir(), disk_mb)
            except CacheError as exc:   # the default folder is ours to give up on
                log.warning("%s; embeddings are cached in memory only", exc)
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._key_locks: dict[CacheKey, list] = {}   # key -> [lock, users]

    def get_or_compute(self, key: CacheKey,
                       compute: Callable[[], Embedding]) -> tuple[Embedding, str]:
        """(embedding, "memory" | "disk" | "computed"); exceptions of `compute` propagate."""
        emb = self.memory.get(key)
        if emb is not None:
            self._count("memory_hits")
            return emb, "memory"
        with self._locked(key):
            emb = self.memory.get(key)   # filled while we waited for another thread
            if emb is not None:
                self._count("memory_hits")
                return emb, "memory"
            self._count("memory_misses")
            if self.disk is not None:
                emb = self.disk.get(key)
                if emb is not None:
                    self._count("disk_hits")
                    self.memory.put(key, emb)
                    return emb, "disk"
                self._count("disk_misses")
            emb = compute()
            if not isinstance(emb, Embedding):
                raise TypeError(f"compute() returned {type(emb).__name__}, not an Embedding")
            if emb.backbone_key != key.backbone_key:
                raise ValueError(f"compute() made an embedding for {emb.backbone_key!r}, "
                                 f"but the key is for {key.backbone_key!r}")
            self._count("computed")
            self.put(key, emb)
            return emb, "computed"

    def get(self, key: CacheKey) -> Embedding | None:
        """Memory, then disk (promoted into memory); None on a miss. Stats not counted."""
        emb = self.memory.get(key)
        if emb is None and self.disk is not None:
            emb = self.disk.get(key)
            if emb is not None:
                self.memory.put(key, emb)
        return emb

    def put(self, key: CacheKey, emb: Embedding) -> None:
        """Store in both levels; a failing disk write is logged, never raised."""
        if emb.backbone_key != key.backbone_key:
            raise ValueError(f"embedding of backbone {emb.backbone_key!r} cannot be stored "
                             f"under key backbone {key.backbone_key!r}")
        self.memory.put(key, emb)
        if self.disk is None:
            return
        try:
            self.disk.put(key, emb)
        except Exception as exc:  # a full disk or an unstorable dtype must not stop labelling
            self._count("disk_write_errors")
            log.warning("embedding cache: cannot write %s to disk (%s)", key.backbone_key, exc)

    def clear(self, disk: bool = False) -> None:
        self.memory.clear()
        if disk and self.disk is not None:
            self.disk.clear()

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    @contextmanager
    def _locked(self, key: CacheKey):
        """A per-key lock, dropped from the table when nobody holds or waits for it."""
        with self._lock:
            entry = self._key_locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._lock:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._key_locks[key]
