"""Ways to run an image encoder on the CPU, behind one call: `runner(x) -> outputs`.

    exact          the reference modules in fp32 (what `exact=True` engines use)
    torch-fp32     the same fp32 modules (today's fast path: the encoder is unchanged)
    torch-bf16     torch CPU autocast to bfloat16 (fast only with AMX / AVX512-BF16 units)
    openvino-fp32  the same module converted by OpenVINO, fp32 inference precision
    openvino-bf16  OpenVINO with bf16 inference precision

Every runner returns fp32 tensors, so decoders never see the difference; the runtime
tag goes into the engine's backbone key, so embeddings of different precisions never
share a cache entry. OpenVINO converts the very torch module the engine built, so every
checkpoint that loads runs; the converted model is kept on disk (engines/runtime/store.py).
"""
from __future__ import annotations

import threading

import torch
from torch import nn

from engines.types import EngineError

RUNTIMES = ("exact", "torch-fp32", "torch-bf16", "openvino-fp32", "openvino-bf16")
# runtimes computing bit-identical features (the same fp32 torch modules): one cache entry
FP32_TORCH = frozenset({"exact", "torch-fp32"})
OV_PRECISION = {"openvino-fp32": "f32", "openvino-bf16": "bf16"}


class RuntimeUnavailable(EngineError):
    """A runtime cannot run this encoder here (not installed, conversion failed)."""


def check_runtime(name: str, source: str = "runtime") -> str:
    if name not in RUNTIMES:
        raise EngineError(f"{source} {name!r} is not a runtime; choose from auto, {', '.join(RUNTIMES)}")
    return name


def key_suffix(runtime: str) -> str:
    """What a runtime adds to a backbone key: nothing for the fp32 torch modules."""
    return "" if runtime in FP32_TORCH else f"+{runtime}"


def _as_tuple(out) -> tuple[torch.Tensor, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


class TorchRunner:
    def __init__(self, module: nn.Module, runtime: str = "torch-fp32"):
        if runtime not in ("exact", "torch-fp32", "torch-bf16"):
            raise EngineError(f"TorchRunner cannot run {runtime!r}")
        self.module, self.runtime = module, runtime

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        bf16 = self.runtime == "torch-bf16" and x.device.type == "cpu"
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = _as_tuple(self.module(x))
        return tuple(o.float() for o in out)


class OpenVinoRunner:
    """A compiled OpenVINO model; one inference at a time (its request is not shared)."""

    def __init__(self, compiled, runtime: str):
        self.compiled, self.runtime = compiled, runtime
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with self._lock:
            result = self._request.infer([x.detach().cpu().contiguous().numpy()])
            return tuple(torch.from_numpy(result[out].copy()).float() for out in self.compiled.outputs)


def import_openvino():
    """`openvino`, imported without its usage telemetry: OpenVINO's converter reports to
    Google Analytics unless the user opted out, and this program sends nothing anywhere.
    Blocking the `openvino_telemetry` import makes OpenVINO use its own no-op stub."""
    import sys
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)   # None: "import fails" to Python
    try:
        import openvino
    except ImportError:
        raise RuntimeUnavailable("OpenVINO is not installed (pip install openvino)") from None
    return openvino


def compile_openvino(model, runtime: str, blob_dir=None):
    """An OpenVINO model (read or converted) compiled for the CPU at `runtime`'s precision."""
    ov = import_openvino()
    # no pinning: OpenVINO's pinned threads slowed the torch decoder's clicks that follow
    # (bench/engine_latency.py: ~30 % on ViT-B, 2 cores)
    config = {"INFERENCE_PRECISION_HINT": OV_PRECISION[runtime], "ENABLE_CPU_PINNING": False}
    if blob_dir is not None:
        config["CACHE_DIR"] = str(blob_dir)
    return ov.Core().compile_model(model, "CPU", config)


def convert_openvino(module: nn.Module, example: torch.Tensor):
    """The torch module as an OpenVINO model (traced on `example`)."""
    import warnings
    ov = import_openvino()
    # tracing warns about every Python-level shape check; the shapes are fixed here
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ov.convert_model(module.eval(), example_input=example)


def relative_error(outputs: tuple[torch.Tensor, ...], reference: tuple[torch.Tensor, ...]) -> float:
    """The largest ||a - b|| / ||b|| over the outputs."""
    worst = 0.0
    for a, b in zip(outputs, reference):
        worst = max(worst, float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)))
    return worst


