"""Embedding cache: LRU by bytes, verified disk files, restarts, threads, get_or_compute."""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engines.files.cache import (FORMAT_VERSION, MIB, CacheError, CacheKey, DiskCache,
                                 EmbeddingCache, MemoryCache, default_cache_dir, image_digest)
from engines.types import Embedding, ImageError

BACKBONE = "sam:vit_b:01ec64"


def make_emb(seed: int = 0, shape=(1, 8, 4, 4), dtype=torch.float32,
             backbone: str = BACKBONE) -> Embedding:
    g = torch.Generator().manual_seed(seed)
    return Embedding(backbone_key=backbone, image_size=(480, 640), input_size=(768, 1024),
                     features={"image_embed": torch.randn(shape, generator=g).to(dtype)},
                     meta={"engine": "sam", "seed": str(seed)})


def key(i: int = 0, backbone: str = BACKBONE, size: int = 1024) -> CacheKey:
    return CacheKey(image_digest=f"digest{i}", backbone_key=backbone, input_size=size)


def assert_same(a: Embedding, b: Embedding) -> None:
    assert a.backbone_key == b.backbone_key
    assert a.image_size == b.image_size and a.input_size == b.input_size
    assert a.meta == b.meta
    assert a.features.keys() == b.features.keys()
    for name, t in a.features.items():
        u = b.features[name]
        if isinstance(t, np.ndarray):
            assert isinstance(u, np.ndarray) and u.dtype == t.dtype
            assert np.array_equal(u, t)
        else:
            assert u.dtype == t.dtype and u.shape == t.shape
            assert u.device.type == "cpu" and u.is_contiguous()
            assert torch.equal(u.view(torch.uint8), t.contiguous().view(torch.uint8))


class Counter:
    """A compute callable that counts how often the 'encoder' ran."""

    def __init__(self, seed: int = 0, backbone: str = BACKBONE, delay: float = 0.0):
        self.calls, self.seed, self.backbone, self.delay = 0, seed, backbone, delay
        self.lock = threading.Lock()

    def __call__(self) -> Embedding:
        with self.lock:
            self.calls += 1
        time.sleep(self.delay)
        return make_emb(self.seed, backbone=self.backbone)


# ---------------------------------------------------------------- keys


def test_image_digest_depends_on_pixels_shape_and_dtype():
    img = np.zeros((4, 6, 3), np.uint8)
    assert image_digest(img) == image_digest(img.copy())
    changed = img.copy()
    changed[2, 3, 1] = 1
    assert image_digest(changed) != image_digest(img)
    assert image_digest(img.reshape(6, 4, 3)) != image_digest(img)
    assert image_digest(img.astype(np.uint16)) != image_digest(img)
    # a non-contiguous view hashes as its pixels, not its memory layout
    wide = np.arange(4 * 12 * 3, dtype=np.uint8).reshape(4, 12, 3)
    assert image_digest(wide[:, ::2]) == image_digest(np.ascontiguousarray(wide[:, ::2]))
    with pytest.raises(ImageError, match="numpy array"):
        image_digest([[1, 2]])


def test_cache_key_validates_and_filename_is_safe_and_distinct():
    k = CacheKey("abc", "sam:vit_b/../x", 1024)
    name = k.filename()
    assert name.endswith(".safetensors") and "/" not in name and ":" not in name
    assert name == CacheKey("abc", "sam:vit_b/../x", 1024).filename()
    assert name != CacheKey("abc", "sam:vit_b/../x", 512).filename()
    assert name != CacheKey("abd", "sam:vit_b/../x", 1024).filename()
    with pytest.raises(ValueError, match="input_size"):
        CacheKey("abc", BACKBONE, 0)
    with pytest.raises(ValueError, match="backbone_key"):
        CacheKey("abc", "", 1024)


def test_default_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("ANNOTATOR_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ANNOTATOR_CACHE_DIR")
    assert default_cache_dir().parts[-1] == "embeddings"
    assert "sam-annotator" in str(default_cache_dir())


# ---------------------------------------------------------------- memory


def test_memory_lru_evicts_by_bytes_not_count():
    small = make_emb(0, shape=(1, 1, 16, 16))        # 1 KiB
    big = make_emb(1, shape=(1, 16, 64, 64))         # 256 KiB
    cache = MemoryCache(max_mb=0.26)                 # ~266 KiB
    for i in range(20):                              # 20 small items fit: count is no limit
        assert cache.put(key(i), small)
    assert len(cache) == 20 and cache.used_bytes == 20 * 1024
    cache.get(key(0))                                # key 0 is now the most recent
    assert cache.put(key(100), big)                  # needs 256 KiB: evicts the oldest smalls
    assert key(100) in cache and key(0) in cache
    assert key(1) not in cache
    assert cache.used_bytes <= 0.26 * MIB
    assert cache.used_bytes == big.nbytes + 1024 * (len(cache) - 1)
    assert cache.put(key(101), make_emb(2, shape=(1, 16, 64, 64)))   # two bigs do not fit
    assert key(100) not in cache and key(101) in cache


def test_memory_oversize_item_not_stored_and_replacing_keeps_accounting():
    cache = MemoryCache(max_mb=0.1)
    assert cache.put(key(0), make_emb(0))
    assert not cache.put(key(1), make_emb(1, shape=(1, 64, 32, 32)))   # 256 KiB > budget
    assert key(1) not in cache and len(cache) == 1
    assert cache.put(key(0), make_emb(3))                              # replace, same size
    assert len(cache) == 1 and cache.used_bytes == make_emb(0).nbytes
    cache.clear()
    assert len(cache) == 0 and cache.used_bytes == 0
    with pytest.raises(ValueError, match="max_mb"):
        MemoryCache(-1)


def test_memory_cache_threads_do_not_corrupt_accounting():
    cache = MemoryCache(max_mb=0.05)     # ~51 KiB: constant eviction
    embs = [make_emb(i, shape=(1, 1, 32, 32)) for i in range(8)]   # 4 KiB each
    errors = []

    def worker(t: int):
        try:
            for n in range(400):
                i = (t * 7 + n) % 40
                got = cache.get(key(i))
                if got is not None:
                    assert got is embs[i % 8]
                cache.put(key(i), embs[i % 8])
        except Exception as exc:   # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert cache.used_bytes == len(cache) * 4096 <= 0.05 * MIB


# ---------------------------------------------------------------- disk


def test_disk_round_trip_is_bit_exact_with_metadata(tmp_path):
    disk = DiskCache(tmp_path)
    emb = make_emb(0)
    emb.features["high_res_0"] = torch.randn(1, 4, 16, 16).to(torch.bfloat16)
    emb.features["high_res_1"] = torch.randn(1, 2, 8, 8, dtype=torch.float16)
    emb.features["nan_inf"] = torch.tensor([float("nan"), float("inf"), -0.0])
    emb.features["view"] = emb.features["image_embed"][:, :, 1:3]       # non-contiguous
    emb.features["alias"] = emb.features["image_embed"]                 # shares storage
    emb.features["np_feat"] = np.arange(12, dtype=np.int16).reshape(3, 4)
    assert disk.put(key(0), emb)
    got = disk.get(key(0))
    assert got is not None and got.image is None
    assert_same(emb, got)
    assert isinstance(got.image_size, tuple) and isinstance(got.input_size, tuple)
    got.features["image_embed"] += 1       # writable, own memory
    assert len(disk) == 1 and not list(tmp_path.glob(".*"))   # no temp file left


def test_disk_refuses_embeddings_with_pixels_and_wrong_backbone(tmp_path):
    disk = DiskCache(tmp_path)
    emb = make_emb(0)
    emb.image = np.zeros((4, 4, 3), np.uint8)
    assert not disk.put(key(0), emb)
    assert disk.get(key(0)) is None and len(disk) == 0
    with pytest.raises(ValueError, match="backbone"):
        disk.put(key(0, backbone="sam2:hiera_t:abc"), make_emb(0))


def test_disk_restart_hits_and_get_or_compute_skips_encoder(tmp_path):
    first = EmbeddingCache(memory_mb=16, disk_dir=tmp_path)
    enc = Counter(5)
    emb, source = first.get_or_compute(key(0), enc)
    assert source == "computed" and enc.calls == 1
    again, source = first.get_or_compute(key(0), enc)
    assert source == "memory" and again is emb and enc.calls == 1

    restarted = EmbeddingCache(memory_mb=16, disk_dir=tmp_path)   # fresh process, same folder
    got, source = restarted.get_or_compute(key(0), enc)
    assert source == "disk" and enc.calls == 1
    assert_same(emb, got)
    got2, source = restarted.get_or_compute(key(0), enc)          # promoted into memory
    assert source == "memory" and got2 is got and enc.calls == 1
    s = restarted.stats
    assert (s.memory_hits, s.memory_misses, s.disk_hits, s.disk_misses, s.computed) == \
        (1, 1, 1, 0, 0)
    # another backbone or input size is another key: computed, not mistaken for this one
    _, source = restarted.get_or_compute(key(0, size=512), enc)
    assert source == "computed" and enc.calls == 2


def corrupt_truncated(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def corrupt_zero_bytes(path: Path):
    path.write_bytes(b"")


def corrupt_garbage(path: Path):
    path.write_bytes(np.random.default_rng(0).bytes(5000))


def corrupt_flip_tensor_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x10       # inside the tensor data, header untouched
    path.write_bytes(bytes(data))


def corrupt_header_length(path: Path):
    data = bytearray(path.read_bytes())
    data[:8] = (10 ** 12).to_bytes(8, "little")
    path.write_bytes(bytes(data))


def rewrite_meta(path: Path, **changes: str):
    """Rewrite the file by hand: same tensors (so the checksum still holds), edited metadata."""
    from safetensors.torch import load_file
    tensors, meta = load_file(str(path)), read_meta(path)
    meta.update(changes)
    save_file(tensors, str(path), metadata=meta)


def stale_other_backbone(path: Path):
    # a well-formed file under this key's name, but written for another checkpoint
    rewrite_meta(path, backbone_key="sam:vit_b:ffffff")


def stale_other_input_size(path: Path):
    rewrite_meta(path, key_input_size="512")


def stale_old_version(path: Path):
    rewrite_meta(path, version=str(int(FORMAT_VERSION) + 1))


def read_meta(path: Path) -> dict:
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        return dict(f.metadata())


@pytest.mark.parametrize("damage", [corrupt_truncated, corrupt_zero_bytes, corrupt_garbage,
                                    corrupt_flip_tensor_byte, corrupt_header_length,
                                    stale_other_backbone, stale_other_input_size,
                                    stale_old_version])
def test_bad_disk_file_is_detected_removed_and_recomputed(tmp_path, damage, caplog):
    cache = EmbeddingCache(memory_mb=16, disk_dir=tmp_path)
    enc = Counter(1)
    original, _ = cache.get_or_compute(key(0), enc)
    path = cache.disk.path_for(key(0))
    assert path.exists()
    damage(path)

    restarted = EmbeddingCache(memory_mb=16, disk_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger="engines.files.cache"):
        assert restarted.disk.get(key(0)) is None            # never raises, never trusted
    assert not path.exists()                                  # the bad file is gone
    assert any(path.name in r.getMessage() for r in caplog.records)
    got, source = restarted.get_or_compute(key(0), enc)
    assert source == "computed" and enc.calls == 2
    assert_same(original, got)
    assert path.exists()                                      # rewritten, and good again
    assert_same(original, DiskCache(tmp_path).get(key(0)))


def test_disk_size_bound_evicts_least_recently_used(tmp_path):
    emb = make_emb(0, shape=(1, 16, 32, 32))      # 64 KiB per file (+ header)
    disk = DiskCache(tmp_path, max_mb=0.2)        # room for 3
    for i in range(3):
        assert disk.put(key(i), emb)
    for i, age in ((0, 30), (1, 20), (2, 10)):    # key 0 oldest
        os.utime(disk.path_for(key(i)), (1e9 - age, 1e9 - age))
    assert disk.get(key(0)) is not None           # a hit refreshes key 0
    assert disk.put(key(3), emb)
    assert disk.get(key(1)) is None               # least recently used went
    assert all(disk.get(key(i)) is not None for i in (0, 2, 3))
    assert disk.used_bytes() <= 0.2 * MIB
    assert not DiskCache(tmp_path / "tiny", max_mb=0.01).put(key(9), emb)   # oversize


def test_unusable_cache_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CacheError, match=str(blocker)):
        DiskCache(blocker)
    with pytest.raises(CacheError, match="cannot be created"):
        EmbeddingCache(disk_dir=blocker / "sub")


def test_get_or_compute_memory_only_and_compute_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("ANNOTATOR_CACHE_DIR", str(tmp_path / "default"))
    assert EmbeddingCache().disk.directory == tmp_path / "default"
    cache = EmbeddingCache(memory_mb=1, disk=False)
    assert cache.disk is None
    enc = Counter(0)
    for _ in range(5):
        cache.get_or_compute(key(0), enc)
    assert enc.calls == 1 and cache.stats.memory_hits == 4

    def broken():
        raise RuntimeError("encoder failed")

    with pytest.raises(RuntimeError, match="encoder failed"):
        cache.get_or_compute(key(1), broken)
    assert key(1) not in cache.memory and not cache._key_locks
    with pytest.raises(ValueError, match="sam2:hiera_t"):
        cache.get_or_compute(key(2), Counter(0, backbone="sam2:hiera_t:x"))


@pytest.mark.parametrize("use_disk", [True, False])
def test_concurrent_get_or_compute_computes_each_key_once(tmp_path, use_disk):
    cache = EmbeddingCache(memory_mb=16, disk_dir=tmp_path, disk=use_disk)
    encs = [Counter(i, delay=0.02) for i in range(4)]   # slow encoder: callers pile up
    barrier = threading.Barrier(8)
    results, errors = [], []

    def worker(t: int):
        try:
            barrier.wait()
            for n in range(20):
                i = (t + n) % 4
                emb, _ = cache.get_or_compute(key(i), encs[i])
                results.append((i, emb))
        except Exception as exc:   # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and len(results) == 160
    assert [e.calls for e in encs] == [1, 1, 1, 1]
    for i, emb in results:
        assert emb.meta["seed"] == str(i)
    assert not cache._key_locks
    if not use_disk:
        return
    restarted = EmbeddingCache(memory_mb=16, disk_dir=tmp_path)
    for i in range(4):
        assert restarted.get_or_compute(key(i), encs[i])[1] == "disk"
    assert [e.calls for e in encs] == [1, 1, 1, 1]


def test_concurrent_disk_writers_and_readers_never_see_a_half_file(tmp_path):
    disk = DiskCache(tmp_path)
    embs = [make_emb(i, shape=(1, 32, 32, 32)) for i in range(3)]
    errors = []

    def writer(t: int):
        for n in range(15):
            disk.put(key(0), embs[(t + n) % 3])

    def reader():
        for _ in range(30):
            got = disk.get(key(0))
            if got is not None:
                seed = int(got.meta["seed"])
                if not torch.equal(got.features["image_embed"],
                                   embs[seed].features["image_embed"]):
                    errors.append("mixed file")

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(3)] + \
        [threading.Thread(target=reader) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert disk.get(key(0)) is not None and not list(tmp_path.glob(".*"))


def test_sam_size_embedding_round_trip(tmp_path):
    """The real size: SAM ViT-B's 1x256x64x64 float32 (4 MiB)."""
    emb = make_emb(7, shape=(1, 256, 64, 64))
    assert emb.nbytes == 4 * MIB
    cache = EmbeddingCache(memory_mb=8, disk_dir=tmp_path)
    enc = Counter(7)
    cache.put(key(0), emb)
    restarted = EmbeddingCache(memory_mb=8, disk_dir=tmp_path)
    got, source = restarted.get_or_compute(key(0), enc)
    assert source == "disk" and enc.calls == 0
    assert_same(emb, got)
    assert restarted.memory.used_bytes == 4 * MIB


def test_unstorable_embeddings_stay_in_memory_and_are_recomputed_after_restart(tmp_path, caplog):
    cache = EmbeddingCache(memory_mb=16, disk_dir=tmp_path)
    with_pixels = make_emb(0)
    with_pixels.image = np.zeros((4, 4, 3), np.uint8)         # e.g. the classic engine
    odd = make_emb(1)
    odd.features["labels"] = np.array(["a", "b"])             # a dtype torch cannot hold
    for i, emb in enumerate((with_pixels, odd)):
        with caplog.at_level(logging.WARNING, logger="engines.files.cache"):
            got, source = cache.get_or_compute(key(i), lambda e=emb: e)
        assert source == "computed" and got is emb
        assert cache.get_or_compute(key(i), None)[1] == "memory"
    assert cache.stats.disk_write_errors == 1 and "cannot write" in caplog.text
    assert len(cache.disk) == 0 and not list(tmp_path.iterdir())
    restarted = EmbeddingCache(memory_mb=16, disk_dir=tmp_path)
    enc = Counter(0)
    assert restarted.get_or_compute(key(0), enc)[1] == "computed" and enc.calls == 1
