"""Stable-SAM's plugin (DSP + DRP, spec specs/stable_sam.md §2) and its patch of the
frozen mask decoder.

`StableSAMPlugin` holds the only trainable weights (81,829 for C=256, h=32). `attach`
wraps the forward of the decoder's 2nd TwoWayAttentionBlock (layer index 1) on that
instance only, as a declared layer hook (engines.hosts.fast.layer_hooks): its
token->image cross-attention reads a1*x_def + a2*x (Eq. 6) instead of x. Every SAM
module and weight is reused as is, nothing is copied or registered into SAM's module
tree, and `detach` restores the class's forward. Works on the decoders of
`segment_anything`, `segment_anything_hq` and `sam2` (their blocks run the same steps).

Bilinear sampling is done in feature-map pixel units: the values of
`F.grid_sample(x*, grid, 'bilinear', align_corners=True)` on the clamped locations
(tests compare the two), without grid_sample's [-1, 1] normalise/unnormalise round trip,
which is not exact in float32 (8e-6 at 64x64). So with zero offsets the deformed map is
x* bit for bit and the untrained plugin reproduces SAM exactly. Training differentiates
through gathers; inference uses one sparse matrix product (faster on a CPU).
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from engines.hosts.fast import (MixKeysHook, add_layer_hook, fused_layer_norm_2d, layer_hook,
                                remove_layer_hook)
from engines.types import EngineError

LAYER = 1   # the 2nd two-way attention block (spec §2.1)


@lru_cache(maxsize=8)
def _grid(H: int, W: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Regular grid p as (1, HW, 2) (y, x) and the map's last index (H-1, W-1)."""
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32),
                            indexing="ij")
    ref = torch.stack([ys, xs], -1).reshape(1, H * W, 2).to(device)
    return ref, torch.tensor([H - 1.0, W - 1.0], device=device)


@lru_cache(maxsize=8)
def _rows(n: int, device: torch.device) -> torch.Tensor:
    """CSR row pointers for n rows of 4 entries."""
    return torch.arange(0, 4 * n + 1, 4, device=device)


class StableSAMPlugin(nn.Module):
    """Deformable Sampling Plugin + Dynamic Routing Plugin for one decoder width C."""

    def __init__(self, C: int = 256, s_p: float = 4.0, drp_hidden: int = 32, drp: bool = True):
        super().__init__()
        from segment_anything.modeling.common import LayerNorm2d
        # DSP offset network (spec §2.2); conv_in's output is the amplitude-updated x*
        self.conv_in = nn.Conv2d(C, C, 1)
        self.dw = nn.Conv2d(C, C, 5, padding=2, groups=C)
        self.norm = LayerNorm2d(C)
        self.conv_out = nn.Conv2d(C, 2, 1)
        # DRP (spec §2.3): alpha = softmax(MLP(t_o)) * s
        self.drp = nn.Sequential(nn.Linear(C, drp_hidden), nn.LayerNorm(drp_hidden), nn.GELU(),
                                 nn.Linear(drp_hidden, 2))
        self.s = nn.Parameter(torch.ones(()))
        # s_p travels in the state dict, so a saved plugin rebuilds with its own scale
        self.register_buffer("s_p", torch.tensor(float(s_p)))
        # 0: the paper's "+DSP" ablation (Table 6): keys are the deformed features alone,
        # no routing and no scale s. Saved with the plugin, like s_p.
        self.register_buffer("drp_on", torch.tensor(1.0 if drp else 0.0))
        self.reset_identity()

    @torch.no_grad()
    def reset_identity(self) -> None:
        """Spec §2.5 init: conv_in = I, conv_out = 0, s = 1 (the decoder equals SAM)."""
        C = self.conv_in.out_channels
        self.conv_in.weight.zero_()
        self.conv_in.weight.view(C, C).fill_diagonal_(1.0)
        self.conv_in.bias.zero_()
        self.conv_out.weight.zero_()
        self.conv_out.bias.zero_()
        self.s.fill_(1.0)

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> "StableSAMPlugin":
        """Rebuild from a saved state dict (sizes read from the weights' shapes)."""
        try:
            C = int(state["conv_in.weight"].shape[0])
            hidden = int(state["drp.0.weight"].shape[0])
            s_p = float(state["s_p"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineError(f"not a Stable-SAM plugin state (missing or odd {exc})") from None
        state = dict(state)
        state.setdefault("drp_on", torch.tensor(1.0))      # plugins saved before the flag
        plugin = cls(C, s_p=s_p, drp_hidden=hidden, drp=bool(state["drp_on"]))
        try:
            plugin.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise EngineError(f"Stable-SAM plugin weights do not fit: {str(exc)[:300]}") from None
        return plugin

    # --- DRP ----------------------------------------------------------------------------
    @property
    def uses_drp(self) -> bool:
        return bool(self.drp_on)

    @property
    def scale(self) -> torch.Tensor:
        """s, the DRP's learnt scale (1 without the DRP)."""
        return self.s if self.uses_drp else torch.ones((), dtype=self.s.dtype, device=self.s.device)

    def routing(self, t_o: torch.Tensor) -> torch.Tensor:
        """(B, C) output-mask token -> (B, 2) softmax (deformed, regular); alpha = s * this.
        Without the DRP: (1, 0), the deformed features alone."""
        if not self.uses_drp:
            return torch.tensor([1.0, 0.0], dtype=t_o.dtype, device=t_o.device).expand(t_o.shape[0], 2)
        return torch.softmax(self.drp(t_o), dim=-1)

    def route(self, t_o: torch.Tensor) -> torch.Tensor:
        """(B, C) output-mask token -> (B, 2) alpha (deformed, regular), summing to s."""
        return self.routing(t_o) * self.scale

    # --- DSP ----------------------------------------------------------------------------
    def amplitude(self, x: torch.Tensor) -> torch.Tensor:
        """x* = conv_in(x) on (B, HW, C) tokens: a 1x1 conv is a linear map per location."""
        C = self.conv_in.out_channels
        return F.linear(x, self.conv_in.weight.view(C, C), self.conv_in.bias)

    def offsets(self, x_star: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """(B, HW, C) x* -> (B, 2, H, W) offsets in feature cells, channels (dy, dx),
        |offset| <= s_p."""
        B, _, C = x_star.shape
        H, W = hw
        image = x_star.view(B, H, W, C).permute(0, 3, 1, 2)          # channels-last view
        h = fused_layer_norm_2d(self.norm, self.dw(image)).permute(0, 2, 3, 1)   # (B, H, W, C)
        h = F.gelu(h)
        raw = F.linear(h, self.conv_out.weight.view(2, C), self.conv_out.bias)
        return (self.s_p * torch.tanh(raw)).permute(0, 3, 1, 2)

    @staticmethod
    def _taps(offsets: torch.Tensor, B: int, HW: int, dtype: torch.dtype):
        """Flat indices (B, HW, 4) of the corners (y0x0, y0x1, y1x0, y1x1) around the
        clamped p + offset, and the fractions (B, HW, 2) (fy, fx)."""
        H, W = offsets.shape[-2:]
        ref, top = _grid(H, W, offsets.device)
        # locations in fp32 even under autocast; (B, HW, 2) as (y, x)
        pos = torch.minimum(ref + offsets.float().permute(0, 2, 3, 1).reshape(B, HW, 2), top).clamp(min=0)
        corner = pos.detach().floor()
        frac = (pos - corner).to(dtype)
        corner = corner.long()
        step = (corner < top.long()).long() * torch.tensor([W, 1], device=corner.device)
        first = corner[..., 0] * W + corner[..., 1] + (torch.arange(B, device=corner.device) * HW)[:, None]
        return torch.stack([first, first + step[..., 1], first + step[..., 0], first + step.sum(-1)], -1), frac

    @classmethod
    def _sparse_sampler(cls, offsets: torch.Tensor, B: int, HW: int, dtype: torch.dtype):
        """The bilinear sampling as a sparse (B*HW x B*HW) matrix, 4 entries a row; at a
        zero offset a row is (1, 0, 0, 0), so the product is exact there."""
        taps, frac = cls._taps(offsets, B, HW, dtype)
        wy = torch.stack([1 - frac[..., 0], frac[..., 0]], -1)
        wx = torch.stack([1 - frac[..., 1], frac[..., 1]], -1)
        weights = (wy[..., :, None] * wx[..., None, :]).reshape(-1)
        with warnings.catch_warnings():   # "sparse CSR support is in beta"
            warnings.simplefilter("ignore")
            return torch.sparse_csr_tensor(_rows(B * HW, offsets.device), taps.reshape(-1), weights,
                                           size=(B * HW, B * HW))

    @classmethod
    def sample(cls, x_star: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Bilinear x* at p + offset, clamped to the map: (B, HW, C), (B, 2, H, W) -> (B, HW, C).
        Same values as grid_sample(align_corners=True) at the normalised locations."""
        B, HW, C = x_star.shape
        flat = x_star.reshape(B * HW, C)
        if _fast_path(x_star, offsets):
            return (cls._sparse_sampler(offsets, B, HW, x_star.dtype) @ flat).view(B, HW, C)
        # gathers + lerps, differentiable in x* and offsets; lerp(a, b, 0) == a exactly,
        # and an expanded weight takes lerp's fast path. One index_select for the four
        # corners: its backward (index_add) is several times faster on a CPU than that of
        # x[idx] (index_put with accumulate)
        taps, frac = cls._taps(offsets, B, HW, x_star.dtype)
        g = torch.index_select(flat, 0, taps.reshape(-1)).view(B, HW, 4, C).unbind(2)
        fy, fx = (frac[..., i:i + 1].expand(B, HW, C) for i in (0, 1))
        return torch.lerp(torch.lerp(g[0], g[1], fx), torch.lerp(g[2], g[3], fx), fy)

    def mix(self, x: torch.Tensor, routing: torch.Tensor, hw: tuple[int, int]):
        """Keys/values for the layer-2 token->image attention, Eq. 6: a1*x_def + a2*x with
        alpha = s * routing, computed as s * (x + r*(x_def - x)), r = routing[:, 0], so
        that x_def == x (zero offsets, identity conv_in) or r = 0 give s*x, and with
        s = 1 exactly x. Returns (mixed, offsets)."""
        x_star = self.amplitude(x)
        offsets = self.offsets(x_star, hw)
        r = routing[:, :1].to(x.dtype).view(-1, 1, 1).expand_as(x)   # expanded: fast paths
        if _fast_path(x_star, offsets):
            # inference: x_def - x in one sparse addmm (exactly 0 where x_def == x)
            B, HW, C = x.shape
            sampler = self._sparse_sampler(offsets, B, HW, x.dtype)
            delta = torch.addmm(x.reshape(B * HW, C), sampler, x_star.reshape(B * HW, C), beta=-1)
            return torch.addcmul(x, delta.view(B, HW, C), r).mul_(self.scale), offsets
        x_def = self.sample(x_star, offsets).to(x.dtype)   # (autocast may change dtypes)
        return torch.lerp(x, x_def, r) * self.scale, offsets


def _fast_path(x_star: torch.Tensor, offsets: torch.Tensor) -> bool:
    """Sparse products (no autograd through them) for inference on CPU / CUDA."""
    needs_grad = torch.is_grad_enabled() and (x_star.requires_grad or offsets.requires_grad)
    return not needs_grad and x_star.device.type in ("cpu", "cuda")


class StableSamHook(MixKeysHook):
    """Stable-SAM's layer hook (engines.hosts.fast.LayerHook) on one TwoWayAttentionBlock:
    step (2)'s keys/values mixed by the plugin. Installed as the block's forward (the
    reference transformer calls it) and read by the fast transformer, which calls
    `mix_keys` itself. Keeps the last routing weights (B, 2) and offsets (B, 2, H, W),
    detached, for display and tests."""

    layer_index = LAYER

    def __init__(self, transformer: nn.Module, plugin: StableSAMPlugin, out_idx: int):
        self.block = transformer.layers[LAYER]
        self.plugin = plugin
        self.out_idx = out_idx
        self.hw: tuple[int, int] | None = None
        self.last_alpha: torch.Tensor | None = None
        self.last_offsets: torch.Tensor | None = None
        # the block sees flattened tokens; the map's (H, W) comes from the transformer input
        self._pre = transformer.register_forward_pre_hook(self._remember_hw, with_kwargs=True)

    def _remember_hw(self, module, args, kwargs):
        image = args[0] if args else kwargs["image_embedding"]
        self.hw = tuple(int(v) for v in image.shape[-2:])

    def remove(self) -> None:
        self._pre.remove()

    def mix_keys(self, layer_index: int, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Step (2)'s keys/values: `keys` mixed by the plugin, routed by the output token
        of `queries` (after the block's self-attention); keeps alpha and the offsets."""
        routing = self.plugin.routing(queries[:, self.out_idx])
        hw = self.hw
        if hw is None or hw[0] * hw[1] != keys.shape[1]:
            raise EngineError(f"Stable-SAM: cannot tell the feature map's shape ({hw}, "
                              f"{keys.shape[1]} tokens)")
        mixed, offsets = self.plugin.mix(keys, routing, hw)
        self.last_alpha = (routing * self.plugin.scale).detach()
        self.last_offsets = offsets.detach()
        return mixed


def output_token_index(decoder: nn.Module) -> int:
    """Index of the token DRP reads, in the decoder's token order:
    SAM [iou, mask0..3, sparse]      -> 1 (mask token 0, the single-mask output);
    HQ-SAM [iou, mask0..3, hf, ...]  -> 5 (the HQ output token, spec §2.6);
    SAM 2 [obj_score, iou, mask0..3] -> 2 (mask token 0 shifted by the object-score token;
                                          1 when the model has no object-score token)."""
    if hasattr(decoder, "hf_token"):
        return 1 + decoder.num_mask_tokens - 1    # num_mask_tokens counts the hf token
    if hasattr(decoder, "pred_obj_scores"):
        return 1 + int(bool(decoder.pred_obj_scores))
    return 1


def _transformer_and_index(target: nn.Module, out_idx: int | None) -> tuple[nn.Module, int]:
    transformer = getattr(target, "transformer", None)
    if transformer is not None:
        out_idx = output_token_index(target) if out_idx is None else out_idx
    else:
        transformer = target
        if out_idx is None:
            raise EngineError("attach: a bare two-way transformer needs out_idx")
    layers = getattr(transformer, "layers", None)
    if layers is None or len(layers) <= LAYER:
        raise EngineError(f"attach: {type(transformer).__name__} has no decoder layer {LAYER + 1}")
    return transformer, out_idx


def attach(decoder_or_transformer: nn.Module, plugin: StableSAMPlugin,
           out_idx: int | None = None) -> StableSamHook:
    """Route layer 2 of this decoder through `plugin` until `detach`; out_idx defaults to
    the decoder's own (see output_token_index). Re-attaching replaces the previous hook."""
    transformer, out_idx = _transformer_and_index(decoder_or_transformer, out_idx)
    detach(transformer)
    hook = StableSamHook(transformer, plugin, out_idx)
    add_layer_hook(transformer, hook)   # this block only, no weights touched
    return hook


def detach(decoder_or_transformer: nn.Module) -> None:
    transformer = getattr(decoder_or_transformer, "transformer", decoder_or_transformer)
    layers = getattr(transformer, "layers", ())
    if len(layers) > LAYER and isinstance(layer_hook(layers[LAYER]), StableSamHook):
        remove_layer_hook(transformer, LAYER).remove()


@contextmanager
def attached(decoder_or_transformer: nn.Module, plugin: StableSAMPlugin, out_idx: int | None = None):
    """`with attached(decoder, plugin) as hook:` - the plugin is active only inside."""
    hook = attach(decoder_or_transformer, plugin, out_idx)
    try:
        yield hook
    finally:
        detach(decoder_or_transformer)
