"""Every shape and switch of IP-SAM in one frozen dataclass (spec §2, §6).

`IpSamConfig()` is the paper's 21.26 M model on SAM 2 at 1024 px (d = 256, LoRA r = 32,
both optional enhancements on); `IpSamConfig.tiny()` matches `engines.hosts.tiny.tiny_sam2`
at 128 px (d = 32: embedding 8², prompt masks 32²). Where the paper is silent the spec's
choice is the default; the comment on each field says which ([paper], [spec: R], [ours]).
The ablations of Table 2 / 3 are switches: `prompts="null"` (the LoRA + decoder baseline,
no SPG), `psg=False` (E* = E_pos), `refine=False` (output Y_c), `lateral=False`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from engines.files.plugin_meta import config_from_record, config_record

PROMPTS = ("spg", "null")          # self-prompts, or the "null prompts" baseline [paper]
PSG_PARTNERS = ("pos", "neg")      # second concat input X of the PSG fusion [spec §2.4: R]
OUTPUT_TOKENS = ("spg", "learned")  # T_out replaces the mask tokens, or not (Table 3) [paper]


@dataclass(frozen=True)
class IpSamConfig:
    # -- geometry (spec §2.1): SAM 2 stretches the image to S x S
    image_size: int = 1024               # S: SAM 2's own input side [spec: R]
    transformer_dim: int = 256           # d: SAM 2's prompt-encoder / neck width [paper]
    # -- LoRA on every Hiera block's attn.qkv and attn.proj (spec §2.1)
    lora_rank: int = 32                  # r [paper]; 0: no LoRA (the "heads only" mode)
    lora_alpha: float | None = None      # scale = alpha / r; None: alpha = r, scale 1 [spec: R]
    lora_targets: tuple[str, ...] = ("qkv", "proj")   # ("qkv",): Table 3's "qkv only" [paper]
    # -- transformers (SPG branches and the task decoder share SAM's shape) [paper]
    num_heads: int = 8
    mlp_dim: int = 2048
    attention_downsample_rate: int = 2
    spg_depth: int = 2
    decoder_depth: int = 2
    # -- Self-Prompt Generator (spec §2.3)
    prompts: str = "spg"                 # "spg" | "null" (baseline: empty sparse, zero mask)
    sparse_slots: int = 2                # N_s per branch [spec §6 #4: R]
    num_mask_tokens: int = 4             # SAM 2's mask tokens, replaced by T_out [paper]
    spg_token_proj: bool = True          # per-branch Linear(d, d) on the sparse tokens
    #                                      [spec §2.3: closes the 7.85 M SPG budget]
    output_tokens: str = "spg"           # "spg": T_out; "learned": the decoder's own tokens
    # -- Prompt-Space Gating (spec §2.4)
    psg: bool = True                     # False: the "w/o PSG" ablation, E* = E_pos
    psg_hidden: int = 64                 # gate predictor width [spec: D, 3x3 kernels]
    psg_partner: str = "pos"             # X in cat[E~pos, X] [spec §6 #7: R]
    # -- optional enhancements (spec §2.6), both on in the 21.26 M model
    lateral: bool = True                 # lateral-inhibition gate + logit correction
    lateral_hidden: int = 64             # its head's width [spec: R]
    refine: bool = True                  # zero-initialised pixel refinement head
    refine_width: int = 256              # its 3x3 trunk width [spec: R]
    refine_bottleneck: int = 64          # its "64-ch bottleneck" [paper]
    refine_input_proj: bool = True       # 1x1 projections of up4(E*) and F_s4' [spec §2.6: R]

    def __post_init__(self) -> None:
        self.check()

    @property
    def embed_size(self) -> int:
        """Side of the image embedding F = F_s16."""
        return self.image_size // 16

    @property
    def mask_size(self) -> int:
        """Side of the dense prompt masks and of the decoder's logits (4x the embedding)."""
        return self.image_size // 4

    @property
    def lora_scale(self) -> float:
        alpha = self.lora_rank if self.lora_alpha is None else self.lora_alpha
        return float(alpha) / self.lora_rank if self.lora_rank else 0.0

    @property
    def decoder_tokens(self) -> int:
        """Tokens the task decoder attends with: iou + 4 mask/SPG tokens + both branches' slots."""
        sparse = 2 * self.sparse_slots if self.prompts == "spg" else 0
        return 1 + self.num_mask_tokens + sparse

    def check(self) -> IpSamConfig:
        def bad(message: str) -> None:
            raise ValueError(f"IpSamConfig: {message}")
        if self.image_size % 64:
            bad(f"image_size must be a multiple of 64, got {self.image_size}")
        if self.prompts not in PROMPTS:
            bad(f"prompts must be one of {', '.join(PROMPTS)}, got {self.prompts!r}")
        if self.psg_partner not in PSG_PARTNERS:
            bad(f"psg_partner must be one of {', '.join(PSG_PARTNERS)}, got {self.psg_partner!r}")
        if self.output_tokens not in OUTPUT_TOKENS:
            bad(f"output_tokens must be one of {', '.join(OUTPUT_TOKENS)}, got {self.output_tokens!r}")
        if self.prompts == "null" and (self.psg or self.output_tokens == "spg"):
            bad("the null-prompt baseline has no SPG: it needs psg=False and output_tokens='learned'")
        if self.lora_rank < 0:
            bad(f"lora_rank must be >= 0, got {self.lora_rank}")
        if not set(self.lora_targets) <= {"qkv", "proj"} or not self.lora_targets:
            bad(f"lora_targets must name 'qkv' and/or 'proj', got {self.lora_targets}")
        if self.sparse_slots < 1 or self.num_mask_tokens < 1:
            bad("sparse_slots and num_mask_tokens must be >= 1")
        if self.transformer_dim % (2 * self.num_heads) or self.transformer_dim % 8:
            bad(f"transformer_dim {self.transformer_dim} must be a multiple of 8 and of 2 x num_heads")
        if (self.transformer_dim // self.attention_downsample_rate) % self.num_heads:
            bad("num_heads must divide transformer_dim / attention_downsample_rate")
        return self

    def to_dict(self) -> dict[str, Any]:
        return config_record(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "plugin") -> IpSamConfig:
        return config_from_record(cls, data, source, "IP-SAM")

    @classmethod
    def baseline(cls, **overrides: Any) -> IpSamConfig:
        """Table 2's first row: LoRA + task decoder with null prompts (9.15 M at full size)."""
        base = cls(prompts="null", psg=False, output_tokens="learned", lateral=False, refine=False)
        return replace(base, **overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> IpSamConfig:
        """The CPU test size on `tiny_sam2(img_size=128)`: d = 32, 2 heads, MLP 64, LoRA
        r = 4, narrow PSG / lateral / refinement heads."""
        base = cls(image_size=128, transformer_dim=32, lora_rank=4, num_heads=2, mlp_dim=64,
                   psg_hidden=8, lateral_hidden=8, refine_width=16, refine_bottleneck=8)
        return replace(base, **overrides)
