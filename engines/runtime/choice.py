"""Which encoder runtime answers on this machine: asked for (argument, then the
`ANNOTATOR_RUNTIME` environment variable), else what the calibration picked for this
architecture on this machine, else torch fp32 until a calibration has run.

A calibration times every runtime this machine offers on the engine's own encoder
(random input at the real size), measures each one's features against torch fp32, and
picks the fastest within its bound (FEATURE_BOUND). The record is saved only at the end,
so an interrupted calibration is simply redone next time.
"""
from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone

import torch
from torch import nn

from engines.runtime.encoders import (FP32_TORCH, OV_PRECISION, OpenVinoRunner, RuntimeUnavailable,
                                      TorchRunner, check_runtime, compile_openvino, convert_openvino,
                                      relative_error)
from engines.runtime.machine import has_bf16_units, library_versions, machine_facts
from engines.runtime.store import RuntimeStore

log = logging.getLogger(__name__)
ENV_RUNTIME = "ANNOTATOR_RUNTIME"
# the largest relative feature error (||f - f_fp32|| / ||f_fp32||) a runtime may have to be
# picked: bf16 keeps 8 mantissa bits (~4e-3 per value); across a ViT / Hiera the error grows to
# ~1e-2 (docs/benchmarks.md gives the masks' agreement at these errors)
FEATURE_BOUND = {"torch-bf16": 3e-2, "openvino-bf16": 3e-2, "openvino-fp32": 1e-4}
Progress = Callable[[str], None]


def requested_runtime(runtime: str | None = None, source: str = "runtime") -> str:
    """'auto' or a runtime name, from the argument or the environment."""
    name = (runtime or os.environ.get(ENV_RUNTIME, "") or "auto").strip()
    if name == "auto":
        return name
    source = source if runtime else f"{ENV_RUNTIME}="
    return check_runtime(name, source)


def offered_runtimes() -> list[str]:
    """The runtimes worth trying here: bf16 only on CPUs with bf16 units, OpenVINO if installed."""
    offered = ["torch-fp32"]
    bf16 = has_bf16_units()
    if bf16:
        offered.append("torch-bf16")
    if library_versions()["openvino"]:
        offered.append("openvino-fp32")
        if bf16:
            offered.append("openvino-bf16")
    return offered


def resolve_runtime(runtime: str | None, arch_key: str, store: RuntimeStore) -> tuple[str, bool]:
    """(runtime to use, whether a calibration is still to be done)."""
    name = requested_runtime(runtime)
    if name != "auto":
        return name, False
    record = store.calibration(arch_key, machine_facts())
    if record is None:
        return "torch-fp32", True
    return str(record["picked"]), False


def build_runner(runtime: str, module: nn.Module, example: torch.Tensor, *, arch_key: str,
                 model_key: str, store: RuntimeStore, progress: Progress | None = None):
    """A runner for `runtime`; RuntimeUnavailable (remembered) when OpenVINO cannot do it."""
    if runtime not in OV_PRECISION:
        return TorchRunner(module, runtime)
    known = store.failure(arch_key, runtime)
    if known:
        raise RuntimeUnavailable(known)
    try:
        model = store.load_model(model_key)
        if model is None:
            if progress:
                progress(f"converting the {arch_key} encoder for OpenVINO (once per checkpoint)")
            model = convert_openvino(module, example)
            store.save_model(model_key, model)
        if progress:
            progress(f"compiling the {arch_key} encoder for {runtime}")
        return OpenVinoRunner(compile_openvino(model, runtime, store.blob_dir()), runtime)
    except RuntimeUnavailable as exc:
        store.record_failure(arch_key, runtime, str(exc))
        raise
    except Exception as exc:   # a converter or compiler error: fall back, remembered
        message = f"{runtime} cannot run the {arch_key} encoder ({type(exc).__name__}: {exc})"
        store.record_failure(arch_key, runtime, message[:500])
        raise RuntimeUnavailable(message) from None


def calibrate(module: nn.Module, example: torch.Tensor, *, arch_key: str, model_key: str,
              store: RuntimeStore, runs: int = 2, progress: Progress | None = None,
              offered: list[str] | None = None) -> dict:
    """Time and check each offered runtime; save and return the record."""
    reference = None
    seconds, errors, failed = {}, {}, {}
    for runtime in offered or offered_runtimes():
        try:
            runner = build_runner(runtime, module, example, arch_key=arch_key, model_key=model_key,
                                  store=store, progress=progress)
        except RuntimeUnavailable as exc:
            failed[runtime] = str(exc)
            continue
        if progress:
            progress(f"timing {runtime} on the {arch_key} encoder")
        out = runner(example)                       # warm-up (and the first compile)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            out = runner(example)
            times.append(time.perf_counter() - t0)
        seconds[runtime] = statistics.median(times)
        if reference is None:
            reference = out                         # torch-fp32 comes first
        errors[runtime] = relative_error(out, reference)
    within = [r for r in seconds if r in FP32_TORCH or errors[r] <= FEATURE_BOUND.get(r, 0.0)]
    picked = min(within, key=seconds.__getitem__)
    record = {"facts": machine_facts(), "picked": picked, "seconds": seconds, "rel_error": errors,
              "failed": failed, "when": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    store.save_calibration(arch_key, record)
    log.info("runtime calibration for %s: %s (%s)", arch_key, picked, seconds)
    return record
