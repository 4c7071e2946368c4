"""`hq-sam`: train HQ-SAM's five HQ parts on a frozen SAM (or HQ-SAM 2's three on a
frozen SAM 2), as the official `train/train.py` does (spec §3).

The frozen SAM's encoder runs once per image (the trainer caches `image_embed` and
`interm_0`, the first global-attention block's output); per prompt, the frozen prompt
encoder runs without gradients and the HQ decoder with `multimask_output=False` and
`hq_token_only=True`: the loss is on M_hq alone. A mask prompt goes in as 0/255, not as
logits, as the official code feeds it.

The trained parts are saved as a plugin in the decoder-relative layout
(`hf_token.weight`, ...) that `HqSamEngine.from_checkpoint(sam, plugin=...)` loads, or
`engines.hq_sam.weights.merge_hq_plugin` turns into an official `sam_hq_vit_*.pth`.

`--option fusion=false` (SAM hosts) trains the paper's ablation without global-local
fusion: the HQ token reads only the decoder's upscaled mask features (hq_features are
zeros, so the two fusion blocks get no gradient and stay at their initialisation). The
flag is saved in the plugin's metadata, and the engine honours it on load; a merged
official file has no metadata, so it always fuses.
"""
from __future__ import annotations

from typing import Any

import torch

from engines.files import checkpoint_identity, describe_checkpoint, load_into, load_state_dict
from engines.hosts import (build_sam2_architecture, enable_fast_attention, enable_fast_decoder,
                           enable_fast_upscaling, guess_sam2_arch, is_sam2_state)
from engines.hq_sam import predict_masks_folded
from engines.hq_sam import HQ2_PARTS, HqParts, has_hq_weights, split_hq_checkpoint
from engines.hq_sam import guess_hq_arch, hq_features, hq_from_sam_state, select_hq_output
from engines.types import CheckpointError, PromptError

from ..api import AdapterOutput, PluginAdapter, TrainPrompt, register_adapter
from .sam_host import HostGeometry, Sam2Host, SamHost

MASK_PROMPT_SCALE = 255.0   # official quirk: 0/1 masks enter the prompt encoder as 0/255


def _check(prompt: TrainPrompt) -> None:
    if prompt.box is None and prompt.mask is None and (prompt.points is None or not len(prompt.points)):
        raise PromptError(f"training prompt of kind {prompt.kind!r} has no box, points or mask")


class _HqAdapter(HostGeometry, PluginAdapter):
    """What both hosts share: the frozen model stays in eval mode, the HQ parts train."""
    engine = "hq-sam"
    host_kind = "sam"

    def __init__(self, model, parts: torch.nn.Module, *, arch: str, identity: str):
        super().__init__()
        self.model = model
        self.arch, self.identity = arch, identity
        # set without nn.Module's registration: the parts already live inside the model
        # (HQ-SAM) or in self.hq (HQ-SAM 2), and must not appear twice in the state dict
        self.__dict__["_parts"] = parts

    @property
    def trainable(self) -> torch.nn.Module:
        return self._parts

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.eval()   # frozen: whatever behaves differently in training stays off
        return self

    def backbone_identity(self) -> str:
        return f"{self.host_kind}:{self.arch}:{self.identity}"

    def default_recipe(self) -> dict[str, Any]:
        """The official recipe: Adam 1e-3, 12 epochs, lr x0.1 after epoch 10, batch 4 per
        GPU (32 in all), one prompt per image drawn uniformly from box / 10 points /
        noisy mask, BCE + Dice 1:1 on point-sampled low-res HQ logits."""
        return {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "step",
                "lr_step_at": 10 / 12, "epochs": 12, "batch_size": 4,
                "prompt_mix": {"tight-box": 1, "points-10": 1, "noisy-mask": 1},
                "loss_weights": {"bce": 1.0, "dice": 1.0}}


class HqSamAdapter(_HqAdapter):
    """HQ-SAM on a `segment_anything_hq` Sam whose SAM weights are frozen."""

    def __init__(self, model, *, arch: str, identity: str, fusion: bool = True):
        super().__init__(model, HqParts(model.mask_decoder), arch=arch, identity=identity)
        self.fusion = fusion
        self.host = SamHost(model)
        self.model.eval()
        # the engines' CPU fast paths (equal up to float rounding; tests bound them)
        enable_fast_decoder(model.mask_decoder)
        enable_fast_attention(model.image_encoder)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        device = self.model.pixel_mean.device
        embed, interm = self.model.image_encoder(images.to(device, torch.float32))
        return {"image_embed": embed, "interm_0": interm[0]}

    def forward(self, features: dict[str, torch.Tensor], prompts: list[TrainPrompt]) -> AdapterOutput:
        device = self.model.pixel_mean.device
        embed = features["image_embed"].to(device, torch.float32)
        decoder = self.model.mask_decoder
        hq = hq_features(decoder, embed, features["interm_0"].to(device, torch.float32), self.fusion)
        pe = self.model.prompt_encoder.get_dense_pe()
        logits = []
        for i, prompt in enumerate(prompts):
            _check(prompt)
            with torch.no_grad():   # the prompt encoder is frozen
                sparse, dense = self.host.encode_prompt(prompt, mask_scale=MASK_PROMPT_SCALE)
            # the HQ mask's last conv folded into its kernel (engines/hq_sam/fast.py; same value)
            masks, iou = predict_masks_folded(decoder, embed[i:i + 1], pe, sparse, dense, hq[i:i + 1])
            logits.append(select_hq_output(masks, iou, multimask=False, hq_token_only=True)[0])
        # the HQ mask has no IoU prediction of its own (SAM's IoU head is frozen)
        return AdapterOutput(torch.cat(logits))

    def export(self, path, **meta: Any):
        return super().export(path, fusion=self.fusion, **meta)


class HqSam2Adapter(_HqAdapter):
    """HQ-SAM 2 on a frozen SAM 2.1 (image path; stretched S x S input, no padding)."""
    host_kind = "sam2"

    def __init__(self, model, *, arch: str, identity: str):
        from engines.hq_sam import HqSam2Decoder
        for p in model.parameters():
            p.requires_grad_(False)
        hq = HqSam2Decoder(model.sam_mask_decoder)
        super().__init__(model.eval(), hq, arch=arch, identity=identity)
        self.hq = hq
        self.host = Sam2Host(model)
        enable_fast_decoder(model.sam_mask_decoder)
        enable_fast_upscaling(hq.embedding_maskfeature)
        hq.fast = True

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.host.encode(images)

    def _encode_prompt(self, prompt: TrainPrompt):
        return self.host.encode_prompt(prompt, MASK_PROMPT_SCALE)

    def forward(self, features: dict[str, torch.Tensor], prompts: list[TrainPrompt]) -> AdapterOutput:
        device = self.model.no_mem_embed.device
        f = {k: v.to(device, torch.float32) for k, v in features.items()}
        pe = self.model.sam_prompt_encoder.get_dense_pe()
        encoded = []
        for prompt in prompts:
            _check(prompt)
            with torch.no_grad():
                encoded.append(self._encode_prompt(prompt))
        # one decoder call per group of equal token count (repeat_image=False takes
        # per-prompt features): fewer, larger ops than a call per prompt, same values
        groups: dict[int, list[int]] = {}
        for i, (sparse, _) in enumerate(encoded):
            groups.setdefault(sparse.shape[1], []).append(i)
        logits: list[torch.Tensor | None] = [None] * len(prompts)
        for idx in groups.values():
            g = {k: v[idx] for k, v in f.items()}
            masks, _, _, _ = self.hq(g["image_embed"], pe, torch.cat([encoded[i][0] for i in idx]),
                                     torch.cat([encoded[i][1] for i in idx]), multimask_output=False,
                                     repeat_image=False, high_res_features=[g["high_res_0"], g["high_res_1"]],
                                     hq_token_only=True)
            for j, i in enumerate(idx):
                logits[i] = masks[j:j + 1]
        return AdapterOutput(torch.cat(logits))


KNOWN = ("arch", "num_heads", "decoder_heads", "fusion")


@register_adapter("hq-sam")
def build_hq_sam_adapter(backbone: str, fusion: bool | str = True, **options) -> HqSamAdapter:
    """`backbone`: a SAM checkpoint (official ViT-B/L/H, MobileSAM's TinyViT, or a tiny SAM
    state dict saved from engines.hosts.tiny.tiny_sam / `annotator train sam`), an official
    HQ-SAM file (training then starts from its HQ weights), or a SAM 2.1 checkpoint.
    Options: `arch` (else read from the file), `num_heads` / `decoder_heads` for SAMs
    whose head counts are not the defaults (see sam_config_from_state), `fusion=false` for
    the ablation without global-local fusion (SAM hosts; module docstring)."""
    unknown = sorted(set(options) - set(KNOWN))
    if unknown:
        raise ValueError(f"hq-sam: unknown option(s) {', '.join(unknown)}; known: {', '.join(KNOWN)}")
    fusion = _flag(fusion, "fusion")
    state = load_state_dict(backbone, expected="SAM or SAM 2.1 (the frozen backbone of HQ-SAM)")
    identity = checkpoint_identity(backbone)
    if is_sam2_state(state):
        if not fusion:
            raise ValueError("hq-sam: fusion=false is an ablation of HQ-SAM's fusion block, which "
                             "HQ-SAM 2 does not have (SAM 2's decoder fuses its high-resolution "
                             f"features itself); {backbone} is a SAM 2.1 checkpoint")
        return _sam2_adapter(state, backbone, identity, options.get("arch"))
    arch = options.get("arch") or guess_hq_arch(state)
    if arch is None:
        raise CheckpointError(f"checkpoint {backbone} is not a SAM checkpoint: it looks like "
                              f"{describe_checkpoint(state)}")
    heads = {k: int(options[k]) for k in ("num_heads", "decoder_heads") if k in options}
    model = hq_from_sam_state(state, arch, source=backbone, **heads)   # HQ parts from the file if it has them
    return HqSamAdapter(model, arch=arch, identity=identity, fusion=fusion)


def _flag(value: Any, name: str) -> bool:
    """A boolean option, from the command line's JSON (true / false) or text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):     # `--option fusion=0` parses as JSON
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ValueError(f"hq-sam: {name} must be true or false, not {value!r}")


def _sam2_adapter(state, backbone: str, identity: str, arch: str | None) -> HqSam2Adapter:
    arch = arch or guess_sam2_arch(state)
    if arch is None:
        raise CheckpointError(f"checkpoint {backbone} is a SAM 2 checkpoint of unknown size")
    hq_state = None
    if has_hq_weights(state):
        state, hq_state = split_hq_checkpoint(state)
    model = build_sam2_architecture(arch)
    load_into(model, state, backbone, expected=f"SAM 2.1 {arch}")
    adapter = HqSam2Adapter(model, arch=arch, identity=identity)
    if hq_state is not None:
        load_into(adapter.hq, hq_state, backbone, expected=f"HQ-SAM 2 parts ({', '.join(HQ2_PARTS)})")
    return adapter
