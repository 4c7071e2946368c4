"""IP-SAM as one module (spec §2, §4): SAM 2's frozen image encoder with LoRA, SAM 2's
frozen prompt encoder, and the trained heads (`IpSamHeads`: SPG, PSG, task decoder,
lateral inhibition, refinement). The plugin file is the LoRA factors plus the heads'
state dict.

    img (B,3,S,S) -> Hiera+LoRA -> FPN -> F_s4, F_s8, F = F_s16
    F -> SPG -> M_pos, M_neg (raw logits), T_sp_pos, T_sp_neg, T_out
    M_b -> PE.mask_downscaling (frozen, gradients flow through) -> E_pos, E_neg
    T_sp_pos + PE.point_embeddings[1], T_sp_neg + PE.point_embeddings[0] -> S
    PSG(E_pos, E_neg) -> E*;   decoder(F, dense PE, S, E*, [iou, T_out]) -> Y_c
    lateral(Y_c, F_s4) -> Y_c', F_s4';   refine(Y_c', E*, F_s4') -> Y_ref
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from engines.ip_sam.config import IpSamConfig
from engines.ip_sam.decoder import TaskDecoder
from engines.ip_sam.lora import add_lora, lora_layers, lora_parameter_count, merge_lora
from engines.ip_sam.psg import PromptSpaceGating
from engines.ip_sam.refine import LateralInhibition, RefinementHead
from engines.ip_sam.spg import SelfPromptGenerator


@dataclass
class IpSamOutput:
    logits: torch.Tensor                 # (B, 1, R, R) final logits (Y_ref, or Y_c without refinement)
    coarse: torch.Tensor                 # (B, 1, R, R) Y_c (lateral correction included when on)
    refined: torch.Tensor | None         # (B, 1, R, R) Y_ref, None when refinement is off
    decoder_masks: torch.Tensor          # (B, 4, R, R) every hypernetwork mask (Y_c = index 0)
    mask_pos: torch.Tensor | None        # (B, 1, R, R) M_pos raw logits (None: null prompts)
    mask_neg: torch.Tensor | None        # (B, 1, R, R) M_neg
    e_pos: torch.Tensor                  # (B, d, h, w) E_pos (the zero-mask embedding: null prompts)
    e_star: torch.Tensor                 # (B, d, h, w) E*, the dense prompt the decoder gets
    gate: torch.Tensor | None            # (B, 1, h, w) G (None without PSG); the gate map is 1 - G
    sparse: torch.Tensor                 # (B, 2 N_s, d) S = cat[S_pos, S_neg] (B x 0 x d: null)


class IpSamHeads(nn.Module):
    """Everything IP-SAM trains besides the LoRA factors; absent parts are None."""

    def __init__(self, cfg: IpSamConfig):
        super().__init__()
        self.cfg = cfg
        self.spg = SelfPromptGenerator(cfg) if cfg.prompts == "spg" else None
        self.psg = PromptSpaceGating(cfg) if cfg.psg else None
        self.decoder = TaskDecoder(cfg)
        self.lateral = LateralInhibition(cfg) if cfg.lateral else None
        self.refine = RefinementHead(cfg) if cfg.refine else None


def _frozen(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


class IpSam(nn.Module):
    def __init__(self, cfg: IpSamConfig, image_encoder: nn.Module, prompt_encoder: nn.Module,
                 heads: IpSamHeads | None = None):
        super().__init__()
        d, pe = cfg.transformer_dim, prompt_encoder
        if pe.embed_dim != d or image_encoder.neck.d_model != d:
            raise ValueError(f"IP-SAM of width {cfg.transformer_dim} on a SAM 2 of width {pe.embed_dim}")
        if tuple(pe.image_embedding_size) != (cfg.embed_size,) * 2:
            raise ValueError(f"IP-SAM at {cfg.image_size} px needs a {cfg.embed_size}² embedding; the "
                             f"prompt encoder is built for {tuple(pe.image_embedding_size)}")
        self.cfg = cfg
        self.image_encoder = _frozen(image_encoder)
        self.prompt_encoder = _frozen(prompt_encoder)
        if cfg.lora_rank:
            add_lora(image_encoder.trunk, cfg.lora_rank, cfg.lora_scale, cfg.lora_targets)
        self.heads = heads if heads is not None else IpSamHeads(cfg)

    @classmethod
    def from_sam2(cls, cfg: IpSamConfig, sam2: nn.Module, heads: IpSamHeads | None = None) -> IpSam:
        """On a `sam2` SAM2Base: its image encoder and prompt encoder (shared, not copied)."""
        if int(sam2.image_size) != cfg.image_size:
            raise ValueError(f"IP-SAM at {cfg.image_size} px on a SAM 2 at {sam2.image_size} px")
        return cls(cfg, sam2.image_encoder, sam2.sam_prompt_encoder, heads)

    # -- what trains, what is frozen
    def train(self, mode: bool = True) -> IpSam:
        super().train(mode)
        self.image_encoder.eval()        # frozen: no drop-path, whatever the mode
        self.prompt_encoder.eval()
        return self

    @property
    def merged(self) -> bool:
        return self.cfg.lora_rank > 0 and not lora_layers(self.image_encoder.trunk)

    def merge_lora(self) -> IpSam:
        """Fold the LoRA into the trunk's weights (inference; no more LoRA to train)."""
        merge_lora(self.image_encoder.trunk)
        return self

    def lora_parameters(self) -> list[nn.Parameter]:
        return [p for layer in lora_layers(self.image_encoder.trunk).values()
                for p in (layer.lora_A, layer.lora_B)]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return self.lora_parameters() + [p for p in self.heads.parameters() if p.requires_grad]

    def parameter_breakdown(self) -> dict[str, int]:
        """Trainable parameters per part (spec §2.7's ledger); shapes only."""
        h, cfg = self.heads, self.cfg
        count = lambda m: 0 if m is None else sum(p.numel() for p in m.parameters())
        return {"lora": lora_parameter_count(self.image_encoder.trunk, cfg.lora_rank, cfg.lora_targets),
                "spg": count(h.spg), "psg": count(h.psg), "decoder": count(h.decoder),
                "lateral": count(h.lateral), "refine": count(h.refine)}

    # -- forward
    def encode(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, S, S) -> [F_s4, F_s8, F_s16], each (B, d, ., .)."""
        side = self.cfg.image_size
        if tuple(images.shape[-2:]) != (side, side):
            raise ValueError(f"IP-SAM takes (B, 3, {side}, {side}) images, got {tuple(images.shape)}")
        return list(self.image_encoder(images)["backbone_fpn"])

    def decode(self, fpn: list[torch.Tensor]) -> IpSamOutput:
        cfg, h, pe = self.cfg, self.heads, self.prompt_encoder
        f_s4, image = fpn[0], fpn[-1]
        b, d = image.shape[:2]
        image_pe = pe.get_dense_pe()
        gate = mask_pos = mask_neg = tokens = None
        if h.spg is not None:
            prompts = h.spg(image, image_pe)
            mask_pos, mask_neg = prompts.mask_pos, prompts.mask_neg
            e_pos = pe.mask_downscaling(mask_pos)          # raw logits in, frozen weights
            e_neg = pe.mask_downscaling(mask_neg)
            sparse = torch.cat([prompts.sparse_pos + pe.point_embeddings[1].weight,
                                prompts.sparse_neg + pe.point_embeddings[0].weight], dim=1)
            e_star, gate = h.psg(e_pos, e_neg) if h.psg is not None else (e_pos, None)
            if cfg.output_tokens == "spg":
                tokens = prompts.tokens
        else:                                              # null prompts: zero mask, no tokens
            e_pos = e_star = pe.mask_downscaling(image.new_zeros(b, 1, cfg.mask_size, cfg.mask_size))
            sparse = image.new_zeros(b, 0, d)
        masks = h.decoder(image, image_pe, e_star, sparse, tokens)
        coarse = masks[:, :1]
        if h.lateral is not None:
            coarse, f_s4 = h.lateral(coarse, f_s4)
        refined = h.refine(coarse, e_star, f_s4) if h.refine is not None else None
        logits = refined if refined is not None else coarse
        return IpSamOutput(logits, coarse, refined, masks, mask_pos, mask_neg, e_pos, e_star, gate, sparse)

    def forward(self, images: torch.Tensor) -> IpSamOutput:
        return self.decode(self.encode(images))


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
