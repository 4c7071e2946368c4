"""`stable-sam`: train the Stable-SAM plugin (DSP + DRP, ~0.08 M parameters) on a frozen
SAM or SAM 2 (specs/stable_sam.md §3).

The backbone is a SAM (ViT-B/L/H, or a tiny SAM from engines/hosts/tiny.py) or SAM 2.1
checkpoint. Geometry is the host engine's: SAM resizes the longest side and pads (as
SamPredictor), SAM 2 stretches to S x S (as SAM2ImagePredictor); features are what the
engines' `embed` caches. The plugin is attached to decoder layer 2 exactly as the
engine attaches it, and the trained output is the single-mask token (mask token 0).
"""
from __future__ import annotations

from typing import Any

import torch

from engines.files import checkpoint_identity
from engines.hosts import Sam2Engine, build_host, mask_decoder_of, prompt_encoder_of
from engines.stable_sam import ENGINE, StableSAMPlugin, attach

from ..api import AdapterOutput, PluginAdapter, TrainPrompt, register_adapter
from .sam_host import HostGeometry, Sam2Host, SamHost

RTS_PROMPT_MIX = {"tight-box": 1, "noisy-box": 1, "points-1": 1 / 3, "points-3": 1 / 3,
                  "points-10": 1 / 3}


class StableSamAdapter(HostGeometry, PluginAdapter):
    engine = ENGINE

    def __init__(self, host_engine, backbone_arch: str, backbone_checkpoint: str,
                 plugin: StableSAMPlugin):
        super().__init__()
        self.sam2 = isinstance(host_engine, Sam2Engine)
        self.model = host_engine.model.eval().requires_grad_(False)
        self.plugin = plugin
        self.host = Sam2Host(self.model) if self.sam2 else SamHost(self.model)
        self.hook = attach(self.decoder, self.plugin)   # the same patch the engine applies
        self.backbone_arch, self.backbone_checkpoint = backbone_arch, backbone_checkpoint

    # properties, not attributes: the decoder must not be registered twice in the tree
    @property
    def decoder(self):
        return mask_decoder_of(self.model)

    @property
    def prompt_encoder(self):
        return prompt_encoder_of(self.model)

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()          # frozen: SAM stays in inference mode
        return self

    # --- geometry and the frozen encoder ----------------------------------------------
    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.sam2:
            return self.host.encode(images)
        return {"image_embed": self.model.image_encoder(images)}

    # --- the trainable part -------------------------------------------------------------
    @property
    def trainable(self) -> StableSAMPlugin:
        return self.plugin

    def backbone_identity(self) -> str:
        return f"{self.backbone_arch}:{self.backbone_checkpoint}"

    def forward(self, features: dict[str, torch.Tensor], prompts: list[TrainPrompt]) -> AdapterOutput:
        pe = self.prompt_encoder.get_dense_pe()
        encoded = [self.host.encode_prompt(p) for p in prompts]
        logits: list[torch.Tensor | None] = [None] * len(prompts)
        ious, alphas = list(logits), list(logits)
        if self.sam2:
            # one decoder call per group of equal token count (repeat_image=False takes
            # per-prompt features); predict_masks skips SAM 2's eval-time multimask swap
            groups: dict[int, list[int]] = {}
            for i, (sparse, _) in enumerate(encoded):
                groups.setdefault(sparse.shape[1], []).append(i)
            for idx in groups.values():
                f = {k: v[idx] for k, v in features.items()}
                masks, iou, _, _ = self.decoder.predict_masks(
                    f["image_embed"], pe, torch.cat([encoded[i][0] for i in idx]),
                    torch.cat([encoded[i][1] for i in idx]), repeat_image=False,
                    high_res_features=[f["high_res_0"], f["high_res_1"]])
                for j, i in enumerate(idx):
                    logits[i], ious[i], alphas[i] = masks[j:j + 1, :1], iou[j:j + 1, 0], self.hook.last_alpha[j:j + 1]
        else:
            # SAM's decoder repeats one image per prompt, so each prompt is its own call
            embed = features["image_embed"]
            for i, (sparse, dense) in enumerate(encoded):
                masks, iou = self.decoder(embed[i:i + 1], pe, sparse, dense, multimask_output=False)
                logits[i], ious[i], alphas[i] = masks, iou[:, 0], self.hook.last_alpha
        return AdapterOutput(torch.cat(logits), torch.cat(ious), {"alpha": torch.cat(alphas)})

    # --- recipe (spec §3: HQ-SAM's optimiser, Stable-SAM's robust training strategy) ----
    def default_recipe(self) -> dict[str, Any]:
        return {"optimizer": "adam", "lr": 1e-3, "betas": (0.9, 0.999), "weight_decay": 0.0,
                "schedule": "constant", "epochs": 1, "prompt_mix": dict(RTS_PROMPT_MIX),
                "noisy_box_scale": 0.4, "occlusion": 0.5}


@register_adapter(ENGINE)
def build(backbone: str, arch: str | None = None, s_p: float = 4.0, drp_hidden: int = 32,
          drp: bool | str = True, **options) -> StableSamAdapter:
    """A fresh (identity-initialised) plugin on the frozen backbone checkpoint. `drp=false`
    trains the paper's "+DSP" ablation (no Dynamic Routing Plugin)."""
    if options:
        raise ValueError(f"stable-sam: unknown option(s) {', '.join(sorted(options))}; "
                         "known: arch, s_p, drp_hidden, drp")
    if isinstance(drp, str):
        if drp.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"stable-sam: drp must be true or false, not {drp!r}")
        drp = drp.lower() in ("true", "1")
    host, backbone_arch = build_host(backbone, arch, device="cpu", needed_by="Stable-SAM")
    decoder = mask_decoder_of(host.model)
    plugin = StableSAMPlugin(int(decoder.transformer_dim), s_p=float(s_p), drp_hidden=int(drp_hidden),
                             drp=bool(drp))
    return StableSamAdapter(host, backbone_arch, checkpoint_identity(backbone), plugin)
