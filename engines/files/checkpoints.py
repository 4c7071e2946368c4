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
from typing import Any, Callable, Mapping

import torch

from engines.files.identity import checkpoint_identity
from engines.types import CheckpointError

__all__ = ["checkpoint_identity", "describe_checkpoint", "load_into", "load_state_dict",
           "peek_state_dict"]


def describe_checkpoint(state: Mapping[str, torch.Tensor]) -> str:
    """Best guess at what architecture a state dict belongs to, for error messages
    (engines.hosts.detect reads it; imported here on first use, as hosts import this module)."""
    from engines.hosts.detect import describe
    return describe(state)


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


def peek_state_dict(path: str | Path, expected: str) -> dict[str, torch.Tensor]:
    """The state dict memory-mapped where the file allows, for reading shapes only (no
    copy of a multi-GB file); anything odd goes through `load_state_dict` for its message."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:   # legacy format or a bad file: the full reader gives the message
        return load_state_dict(path, expected)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        return load_state_dict(path, expected)
    return obj


def mismatch_details(expected: Mapping[str, tuple], state: Mapping[str, Any], *,
                     optional: Callable[[str], bool] = lambda key: False,
                     against: str = "model") -> list[str]:
    """How `state` differs from the key -> shape layout `expected` (keys for which
    `optional` is true may be absent or extra): [] when it fits."""
    missing = [k for k in expected if k not in state and not optional(k)]
    unexpected = [k for k in state if k not in expected and not optional(k)]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    details = []
    if missing:
        details.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
    if unexpected:
        details.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
    if wrong:
        k = wrong[0]
        details.append(f"{len(wrong)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)} "
                       f"vs {against} {tuple(expected[k])})")
    return details


def load_into(model: torch.nn.Module, state: Mapping[str, torch.Tensor], path: str | Path,
              expected: str) -> None:
    """Load `state` into `model` strictly, turning key/shape mismatches into one message."""
    details = mismatch_details({k: tuple(v.shape) for k, v in model.state_dict().items()}, state)
    if details:
        raise CheckpointError(
            f"checkpoint {path} does not fit {expected}: it looks like "
            f"{describe_checkpoint(state)}; " + "; ".join(details))
    model.load_state_dict(state, strict=True)
