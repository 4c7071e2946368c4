"""Device choice: CUDA, then Apple MPS, then CPU; `ANNOTATOR_DEVICE` or an explicit
argument overrides. Half precision is only used where it is safe (CUDA encoders)."""
from __future__ import annotations

import os

import torch

from engines.types import EngineError


def choose_device(preferred: str | None = None) -> torch.device:
    name = preferred or os.environ.get("ANNOTATOR_DEVICE") or ""
    if name:
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise EngineError(f"unknown device {name!r}: {exc}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise EngineError(f"device {name!r} requested but CUDA is not available here")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise EngineError(f"device {name!r} requested but Apple MPS is not available here")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def encoder_autocast(device: torch.device):
    """Autocast context for the image encoder: bf16/fp16 on CUDA, off elsewhere.

    The CPU path stays fp32: this machine's CPU has no native bf16 (emulated bf16 was
    slower in bench/engine_latency.py) and fp32 keeps masks identical to the reference.
    """
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast(device.type, enabled=False)
