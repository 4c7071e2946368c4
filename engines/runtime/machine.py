"""What this machine's CPU can do, as far as encoder precision is concerned, and the
facts a calibration is only valid for (CPU model, cores, library versions)."""
from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path

# the flags that decide whether bf16 is fast here (AMX tiles, or AVX512 bf16 dot products)
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
REPORTED_FLAGS = ("amx_bf16", "avx512_bf16", "avx512_vnni", "amx_tile", "avx512f")


@lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, flags) from /proc/cpuinfo; ('<platform processor>', {}) elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return platform.processor() or platform.machine(), frozenset()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model or platform.machine(), frozenset(flags)


def has_bf16_units() -> bool:
    return bool(cpu_info()[1] & set(BF16_FLAGS))


def library_versions() -> dict[str, str | None]:
    import torch
    versions: dict[str, str | None] = {"torch": torch.__version__}
    try:
        from importlib.metadata import version
        versions["openvino"] = version("openvino")
    except Exception:   # not installed (or broken metadata): no OpenVINO runtimes
        versions["openvino"] = None
    return versions


def machine_facts() -> dict:
    """What a calibration depends on; a record made under other facts is redone."""
    model, flags = cpu_info()
    import torch
    return {"cpu": model, "cores": os.cpu_count() or 1, "threads": torch.get_num_threads(),
            "flags": sorted(flags & set(REPORTED_FLAGS)), **library_versions()}
