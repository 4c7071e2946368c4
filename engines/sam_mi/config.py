"""Every shape and switch of SAM-MI in one frozen dataclass (spec shared/specs/sam_mi.md §2).

`SamMiConfig()` is the paper's ViT-B/16 model (CLIP input 384 px, 24² tokens, cost
channels 128, two aggregator layers, guidance taps after blocks 4 and 8);
`SamMiConfig.vit_l()` the ViT-L/14 variant (336 px, four layers, taps 8 and 16, 6x6
class pooling). `SamMiConfig.tiny()` fits the tiny CLIP of engines/sam_mi/tiny.py (96 px,
6² tokens) so tests run in milliseconds. The comment on each field says where it comes
from ([paper], [CAT-Seg], [choice]: the spec's decision where the paper is silent).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engines.files.plugin_meta import config_from_record, config_record

MAX_CLASSES = 256          # typed names per request: above this the request is refused
SAMPLING = ("deterministic", "bernoulli")


@dataclass(frozen=True)
class SamMiConfig:
    # -- CLIP (spec §2.1)
    clip_size: int = 384                 # CLIP input side [CAT-Seg vitb_384]
    patch: int = 16                      # ViT patch [CAT-Seg]
    clip_width: int = 768                # visual transformer width [CAT-Seg]
    embed_dim: int = 512                 # D_c = D_v, projected CLIP dim [paper]
    taps: tuple[int, int] = (3, 7)       # resblocks giving F_h1, F_h2 (blocks 4 and 8) [CAT-Seg]
    template: str = "a photo of {}."     # one prompt template (ViT-B) [CAT-Seg]
    # -- cost aggregation (spec §2.2)
    hidden: int = 128                    # C [CAT-Seg]
    layers: int = 2                      # N_L [CAT-Seg ViT-B]
    heads: int = 4                       # [CAT-Seg]
    window: int = 12                     # Swin window (shift = window // 2) [CAT-Seg]
    pooling: int = 2                     # class aggregation's average pooling [CAT-Seg ViT-B]
    pad_len: int = 256                   # classes padded to this; more -> top pad_len kept [CAT-Seg]
    text_proj: int = 128                 # text guidance Linear(D_c -> 128) [CAT-Seg]
    appearance_proj: int = 128           # appearance guidance Conv3x3(D_v -> 128) [CAT-Seg]
    decoder_dims: tuple[int, int] = (64, 32)          # [CAT-Seg]
    guidance_dims: tuple[int, int] = (256, 128)       # F_h1, F_h2 channels [CAT-Seg]
    guidance_proj: tuple[int, int] = (32, 16)         # [CAT-Seg]
    # -- TSPP (spec §2.4)
    grid: int = 32                       # d_h = d_w: SAM's point grid [paper]
    tspp_hidden: int = 128               # per-(class, pixel) MLP width [choice]
    g_p: int = 5                         # Eq. 5 [paper]
    m_p: int = 10                        # Eq. 5 [paper]
    sampling: str = "deterministic"      # top round(sum p) points, or "bernoulli" [choice]
    # -- SMAgg (spec §2.5)
    alpha: float = 0.5                   # alpha_sma, strict ">" [paper]
    # -- DMI (spec §2.6, §2.7)
    dmi_low: bool = True                 # mask pooling + cross-attention [paper]
    dmi_high: bool = True                # mask embedding + gamma * DWConv(MLP) [paper]
    dmi_heads: int = 8                   # Eq. 10's attention [choice]
    gamma_init: float = 1.0              # [paper]

    def __post_init__(self) -> None:
        self.check()

    @property
    def tokens(self) -> int:
        """h = w: the CLIP token grid side."""
        return self.clip_size // self.patch

    @classmethod
    def vit_l(cls) -> SamMiConfig:
        return cls(clip_size=336, patch=14, clip_width=1024, embed_dim=768, taps=(7, 15),
                   layers=4, pooling=6, guidance_dims=(256, 128),
                   template="a photo of a {}.")

    @classmethod
    def tiny(cls, **kw: Any) -> SamMiConfig:
        """Matches engines.sam_mi.tiny.tiny_clip(): 96 px, patch 16, width 32, 4 blocks."""
        base = {"clip_size": 96, "patch": 16, "clip_width": 32, "embed_dim": 32, "taps": (1, 2),
                    "hidden": 16, "layers": 1, "heads": 2, "window": 3, "pooling": 2, "pad_len": 8, "text_proj": 16,
                    "appearance_proj": 16, "decoder_dims": (16, 16), "guidance_dims": (16, 16),
                    "guidance_proj": (8, 4), "grid": 8, "tspp_hidden": 16, "dmi_heads": 2}
        base.update(kw)
        return cls(**base)

    def check(self) -> None:
        if self.clip_size % self.patch:
            raise ValueError(f"clip_size {self.clip_size} is not a multiple of patch {self.patch}")
        if self.hidden % self.heads or self.hidden - self.guidance_proj[0] <= 0:
            raise ValueError("hidden must be divisible by heads and exceed guidance_proj[0]")
        if self.embed_dim % self.dmi_heads:
            raise ValueError("embed_dim must be divisible by dmi_heads")
        if self.sampling not in SAMPLING:
            raise ValueError(f"sampling must be one of {', '.join(SAMPLING)}")
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError(f"alpha must be in [0, 1), got {self.alpha}")
        if self.tokens % self.pooling:
            raise ValueError(f"the token grid {self.tokens} is not a multiple of pooling {self.pooling}")

    def to_dict(self) -> dict[str, Any]:
        return config_record(self)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any], *, source: str = "config") -> SamMiConfig:
        return config_from_record(cls, record, source, "SAM-MI")
