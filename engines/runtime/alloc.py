"""Process-wide allocator tuning for the ViT encoders.

glibc's malloc returns the encoders' large attention buffers to the OS after every call
(mmap/munmap) and page-faults them in again on the next one; on this 2-core machine that
doubled SAM ViT-B's encode time (bench/engine_latency.py). Raising the mmap and trim
thresholds keeps freed memory in the heap instead. Costs: up to ~1 GiB more resident
memory after an encode. Call `tune_allocator()` from entry points (command line, GUI,
benchmarks) before models allocate; `ANNOTATOR_MALLOC=default` switches it off.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
_done: bool | None = None


def tune_allocator() -> bool:
    """Apply the thresholds once; True if glibc accepted them (False elsewhere)."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("ANNOTATOR_MALLOC", "").lower() == "default" or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = (libc.mallopt(M_MMAP_THRESHOLD, 2**31 - 1)
              and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
              and libc.mallopt(M_TOP_PAD, 2**30))
        _done = bool(ok)
    except (OSError, AttributeError):   # not glibc (musl, macOS): nothing to tune
        _done = False
    return _done
