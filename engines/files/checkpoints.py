"""Safe checkpoint loading with one clear error per failure.

Official SAM / SAM 2 / HQ-SAM files are loaded unchanged with
`torch.load(..., weights_only=True)`, so a file carrying a pickle payload is refused
without running it. Every failure becomes a CheckpointError that names the file and
what was expected, never a traceback from deep inside torch.
"""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Mapping

import torch

from engines.files.identity import checkpoint_identity
from engines.types import CheckpointError

__all__ = ["checkpoint_identity", "describe_checkpoint", "load_into", "load_state_dict"]


def describe_checkpoint(state: Mapping[str, torch.Tensor]) -> str:
    """Best guess at what architecture a state dict belongs to, for error messages."""
    keys = state.keys()
    if any(k.startswith("image_encoder.trunk.") for k in keys):
        width = state.get("image_encoder.trunk.patch_embed.proj.weight")
        dims = {96: "hiera_t or hiera_s", 112: "hiera_b+", 144: "hiera_l"}
        return f"SAM 2 ({dims.get(int(width.shape[0]), 'unknown size') if width is not None else '?'})"
    hq = any(k.startswith("mask_decoder.hf_token") for k in keys)
    pos = state.get("image_encoder.pos_embed")
    if pos is not None:
        size = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}.get(int(pos.shape[-1]), f"ViT width {pos.shape[-1]}")
        return f"{'HQ-SAM' if hq else 'SAM'} ({size})"
    if any(k.startswith("image_encoder.") for k in keys):
        return "HQ-SAM (TinyViT)" if hq else "a SAM-like model with an unknown encoder"
    return "not a SAM-family state dict"


def load_state_dict(path: str | Path, expected: str) -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely; unwrap `{"model": ...}`; `expected` names the
    architecture the caller wants, for the error message."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist (expected a {expected} checkpoint)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is not a file (expected a {expected} checkpoint)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); expected a {expected} checkpoint")
    try:
        with warnings.catch_warnings():   # torch warns about odd pickle protocols first
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).splitlines()[0][:200]
        raise CheckpointError(
            f"checkpoint {path} was refused: it holds Python objects other than tensors, "
            f"which could run code when loaded ({reason}); expected a plain {expected} "
            f"state dict") from None
    except Exception as exc:   # torch's readers fail in many ways on foreign bytes
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {path} cannot be read as a PyTorch checkpoint (truncated or not a "
            f"checkpoint: {reason}); expected a {expected} checkpoint") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {path} is not a state dict of tensors; expected a {expected} checkpoint")
    return obj


def load_into(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: str | Path,
              expected: str) -> None:
    """Load `state` into `model` strictly, turning key/shape mismatches into one message."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong_shape:
        details = []
        if missing:
            details.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if wrong_shape:
            k = wrong_shape[0]
            details.append(f"{len(wrong_shape)} shape mismatches (e.g. {k}: file "
                           f"{tuple(state[k].shape)} vs model {tuple(own[k].shape)})")
        raise CheckpointError(
            f"checkpoint {path} does not fit {expected}: it looks like "
            f"{describe_checkpoint(state)}; " + "; ".join(details))
    model.load_state_dict(state, strict=True)
