"""The frozen Hiera branch: timm's Hiera (MAE ImageNet-1K, `hiera_base_plus_224.mae`)
built at PMG-SAM's input size, the pretrained absolute position embedding interpolated
bicubically from the pretraining grid (56² at 224) to the new one (256² at 1024).

Weights come from a timm-format file the user has (`model.safetensors` or
`pytorch_model.bin` of timm's hub repo; the official `mae_in1k` `.pth` with its
`model_state` wrapper also reads, through timm's own key filter). Nothing is ever
downloaded. The four stage outputs S1..S4 are returned as NCHW tensors.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engines.files.checkpoints import mismatch_details
from engines.types import CheckpointError


@dataclass(frozen=True)
class HieraSpec:
    """A timm Hiera variant and the sizes it is built at / was pretrained at."""
    variant: str = "hiera_base_plus_224"     # timm model name (the `.mae` tag's architecture)
    embed_dim: int = 112
    num_heads: int = 2
    stages: tuple[int, ...] = (2, 3, 16, 3)
    img_size: int = 1024                     # built at PMG-SAM's input size
    pretrain_img_size: int = 224             # the checkpoint's position-embedding grid x 4

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(self.embed_dim * 2 ** i for i in range(len(self.stages)))

    @property
    def name(self) -> str:
        return f"timm {self.variant} (MAE IN-1K) at {self.img_size}"

    @classmethod
    def tiny(cls, img_size: int = 64) -> HieraSpec:
        """A real timm Hiera small enough for unit tests: 8 ch, one block a stage."""
        return cls(variant="hiera_tiny_224", embed_dim=8, num_heads=1, stages=(1, 1, 1, 1),
                   img_size=img_size, pretrain_img_size=img_size // 2)


HIERA_B_PLUS = HieraSpec()


def build_timm_hiera(spec: HieraSpec, img_size: int | None = None) -> nn.Module:
    """timm's Hiera of this shape with random weights (never downloads)."""
    import timm
    return timm.create_model(spec.variant, pretrained=False, num_classes=0,
                             img_size=img_size or spec.img_size, embed_dim=spec.embed_dim,
                             num_heads=spec.num_heads, stages=spec.stages)


class HieraBranch(nn.Module):
    """Frozen Hiera trunk -> [S1, S2, S3, S4] (B, C_k, H/4/2^k, W/4/2^k). Always in
    eval mode with no gradients, whatever `train()` is called with."""

    def __init__(self, trunk: nn.Module, spec: HieraSpec):
        super().__init__()
        self.trunk = trunk
        self.spec = spec
        self.channels = spec.channels
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> HieraBranch:
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.trunk.forward_intermediates(x, intermediates_only=True))


def resize_pos_embed(pos_embed: torch.Tensor, tokens: int) -> torch.Tensor:
    """(1, g*g, C) -> (1, t, C) with t = s*s, bicubic over the square token grid."""
    n, c = pos_embed.shape[1], pos_embed.shape[2]
    g, s = math.isqrt(n), math.isqrt(tokens)
    if g * g != n or s * s != tokens:
        raise ValueError(f"position embedding of {n} tokens is not a square grid")
    if g == s:
        return pos_embed
    grid = pos_embed.reshape(1, g, g, c).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(s, s), mode="bicubic", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, s * s, c).to(pos_embed.dtype)


def read_hiera_file(path: str | Path, spec: HieraSpec) -> dict[str, torch.Tensor]:
    """The file's state dict (safetensors or torch), one CheckpointError naming it."""
    path = Path(path)
    expected = f"Hiera ({spec.name})"
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise CheckpointError(f"Hiera file {path} does not exist (expected a {expected} "
                                  "checkpoint in timm's format)")
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as exc:   # noqa: BLE001  (safetensors raises several types on foreign bytes)
            raise CheckpointError(f"Hiera file {path} is not a readable safetensors file "
                                  f"({str(exc)[:160]}); expected a {expected} checkpoint") from None
    from engines.files.checkpoints import load_state_dict
    try:
        return load_state_dict(path, expected=expected)
    except CheckpointError:
        wrapped = _model_state(path)     # the official Hiera release's {"model_state": ...}
        if wrapped is None:
            raise
        return wrapped


def _model_state(path: Path) -> dict[str, torch.Tensor] | None:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:   # noqa: BLE001  (load_state_dict already said what is wrong)
        return None
    inner = obj.get("model_state") if isinstance(obj, dict) else None
    if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
        return inner
    return None


def hiera_state_for(state: Mapping[str, torch.Tensor], model: nn.Module, spec: HieraSpec,
                    path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors renamed by timm's filter, the position embedding
    interpolated to the model's grid, checked key by key against the model (the unused
    classifier head may be absent or extra)."""
    from timm.models.hiera import checkpoint_filter_fn
    state = checkpoint_filter_fn(dict(state), model)
    own = model.state_dict()
    if "pos_embed" in state and "pos_embed" in own and state["pos_embed"].ndim == 3 \
            and state["pos_embed"].shape[-1] == own["pos_embed"].shape[-1]:
        try:
            state["pos_embed"] = resize_pos_embed(state["pos_embed"], own["pos_embed"].shape[1])
        except ValueError as exc:
            raise CheckpointError(f"Hiera file {path}: {exc}") from None
    details = mismatch_details({k: tuple(v.shape) for k, v in own.items()}, state,
                               optional=lambda k: k.startswith("head."))
    if details:
        raise CheckpointError(f"Hiera file {path} does not fit {spec.name}: " + "; ".join(details))
    return {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}


def load_hiera_branch(path: str | Path, spec: HieraSpec = HIERA_B_PLUS) -> HieraBranch:
    """The frozen branch with the file's weights, built at `spec.img_size`."""
    state = read_hiera_file(path, spec)
    trunk = build_timm_hiera(spec)
    trunk.load_state_dict(hiera_state_for(state, trunk, spec, path), strict=False)
    return HieraBranch(trunk, spec)
