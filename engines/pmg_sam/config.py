"""Every shape and every choice of PMG-SAM in one frozen dataclass (spec §2 and §6).

`PmgSamConfig()` is the paper's full-size model (Hiera-B+ at 1024, U²-Net on a 256 copy,
d = 256); `PmgSamConfig.tiny()` is the CPU test size of spec §7. Where the paper is
silent the spec's choice is the default and the alternative is a named option; the
comment on each field says which.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from engines.files.plugin_meta import config_from_record, config_record

FUSIONS = ("drfm", "none", "residual")   # spec §6 #14: DRFM, the "no fusion" and "Residual Fusion" ablations
HIGH_RES = ("hiera", "none")             # spec §5 ablation (b): Hiera stages 1-2 injected, or none


@dataclass(frozen=True)
class PmgSamConfig:
    # -- input geometry (spec §2.1, §2.3)
    image_size: int = 1024               # resize-longest + zero-pad side [choice, §6 #1]
    u2net_size: int = 256                # U²-Net runs on a square copy of the padded input [choice, §6 #2]
    # -- frozen branches: their channels (what the trainable part is shaped for)
    hiera_channels: tuple[int, ...] = (112, 224, 448, 896)         # S1..S4, strides 4..32 [paper]
    u2_channels: tuple[int, ...] = (64, 128, 256, 512, 512, 512)   # U_1..U_6 [paper: 6 stages]
    pairing: tuple[int, ...] = (0, 1, 2, 3, 3, 3)  # Hiera stage k feeding H_i (0-based) [choice, §2.4]
    # -- fusion (spec §2.5)
    fusion: str = "drfm"                 # "drfm" | "none" | "residual" (ablations, §6 #14)
    adapter_channels: int = 64           # c_h: H-adapter output channels [choice]
    srbs: int = 3                        # L, SRBs per DRFM [paper]
    srb_iterations: int = 4              # M, dense fusion iterations per SRB [paper]
    growth: int = 64                     # g, channels of each dense feature [choice, §6 #3]
    alpha: float = 0.2                   # DRFM long-skip scale [choice, §6 #4]
    beta: float = 0.2                    # SRB residual scale [choice, §6 #4]
    gn_groups: int = 32                  # GroupNorm groups (capped at C) [choice]
    leaky_slope: float = 0.2             # LeakyReLU slope of the dense convs [choice]
    drfm_init_scale: float = 1.0         # 0.1: ESRGAN's init trick (optional in the spec)
    # -- Pre-Mask (spec §2.6)
    premask_size: int = 256              # R: FeatRefiner output side (SAM's low-res mask size) [choice]
    # -- FPN neck (spec §2.7, SAM 2 FpnNeck)
    fpn_top_down_levels: tuple[int, ...] = (2, 3)   # levels receiving the top-down sum
    # -- guided mask decoder (spec §2.8)
    transformer_dim: int = 256           # d
    num_heads: int = 8
    mlp_dim: int = 2048
    attention_downsample_rate: int = 2
    baim_blocks: int = 2                 # K [paper]
    bidirectional: bool = True           # False: the "Uni-dir" ablation (no image->token attention)
    premask_patch: int = 16              # P: Pre-Mask patch side -> (R/P)² tokens [choice, §6 #5]
    premask_dense: bool = False          # also feed the Pre-Mask as SAM's dense mask embedding [§6 #6]
    mask_in_chans: int = 16              # SAM's mask_downscaling width (only with premask_dense)
    num_mask_tokens: int = 4             # SAM: 1 + 3 multimask tokens; output = token 0
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    high_res: str = "hiera"              # "hiera" | "none": skips from Hiera stages 1-2 into the upscaling

    def __post_init__(self) -> None:
        self.check()

    # -- derived sizes
    @property
    def embed_size(self) -> int:
        """Side of the image embedding P16 (stride 16)."""
        return self.image_size // 16

    @property
    def premask_tokens(self) -> int:
        return (self.premask_size // self.premask_patch) ** 2

    @property
    def refiner_channels(self) -> int:
        return sum(self.u2_channels)

    def check(self) -> PmgSamConfig:
        def bad(message: str) -> None:
            raise ValueError(f"PmgSamConfig: {message}")
        if len(self.hiera_channels) != 4:
            bad(f"hiera_channels must list the 4 Hiera stages, got {self.hiera_channels}")
        if len(self.pairing) != len(self.u2_channels):
            bad(f"pairing has {len(self.pairing)} entries for {len(self.u2_channels)} U²-Net stages")
        if any(not 0 <= k < 4 for k in self.pairing):
            bad(f"pairing must name Hiera stages 0..3, got {self.pairing}")
        if self.fusion not in FUSIONS:
            bad(f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        if self.high_res not in HIGH_RES:
            bad(f"high_res must be one of {', '.join(HIGH_RES)}, got {self.high_res!r}")
        if self.image_size % 32:
            bad(f"image_size must be a multiple of 32, got {self.image_size}")
        if self.premask_size != self.embed_size * 4:
            bad(f"premask_size ({self.premask_size}) must be 4x the embedding side "
                f"({self.embed_size}): the decoder's output and the Pre-Mask share SAM's low-res size")
        if self.premask_size % self.premask_patch:
            bad(f"premask_patch {self.premask_patch} must divide premask_size {self.premask_size}")
        if self.srbs < 1 or self.srb_iterations < 2:
            bad("srbs must be >= 1 and srb_iterations >= 2")
        if self.transformer_dim % 8 or self.transformer_dim % (2 * self.num_heads):
            bad(f"transformer_dim {self.transformer_dim} must be a multiple of 8 and of 2 x num_heads")
        if (self.transformer_dim // self.attention_downsample_rate) % self.num_heads:
            bad("num_heads must divide transformer_dim / attention_downsample_rate")
        if self.num_mask_tokens < 1:
            bad("num_mask_tokens must be >= 1")
        return self

    @property
    def arch(self) -> str:
        """The frozen backbones' identity a trained plugin is bound to (plugin metadata)."""
        hiera = "x".join(map(str, self.hiera_channels))
        u2 = "x".join(map(str, self.u2_channels))
        return f"hiera[{hiera}]@{self.image_size}+u2net[{u2}]@{self.u2net_size}"

    def to_dict(self) -> dict[str, Any]:
        return config_record(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "plugin") -> PmgSamConfig:
        return config_from_record(cls, data, source, "PMG-SAM")

    @classmethod
    def tiny(cls, **overrides: Any) -> PmgSamConfig:
        """Spec §7's CPU size: 64² input, TinyHiera (8/16/32/64 ch), TinyU2 on a 16² copy
        (4, 8, 8, 16, 16, 16 ch), g = c_h = 4, d = 32, 2 heads, MLP 64, Pre-Mask 16², P = 4."""
        base = cls(image_size=64, u2net_size=16, hiera_channels=(8, 16, 32, 64),
                   u2_channels=(4, 8, 8, 16, 16, 16), adapter_channels=4, growth=4, gn_groups=4,
                   premask_size=16, transformer_dim=32, num_heads=2, mlp_dim=64,
                   premask_patch=4, mask_in_chans=4, iou_head_hidden_dim=32)
        return replace(base, **overrides)
