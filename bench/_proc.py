"""What the benchmarks read about this machine and process from Linux's /proc."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_header() -> str:
    """CPU model and the bf16 flags, as the other tables in docs/benchmarks.md give them."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == (platform.processor() or "unknown CPU"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    marks = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in ("avx512_bf16", "amx_bf16"))
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{model} ({marks}), {os.cpu_count()} cores, {ram:.0f} GiB RAM, "
            f"Python {platform.python_version()}")


def status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def reset_peak() -> None:
    """Start VmHWM afresh from the current RSS (Linux clear_refs 5)."""
    Path("/proc/self/clear_refs").write_text("5")
