"""`hq-sam`: HQ-SAM (Ke et al., NeurIPS 2023) on the `segment_anything_hq` package.

Builds the official architecture (ViT-B/L/H, or TinyViT for Light HQ-SAM) and mirrors
`segment_anything_hq.SamPredictor` step for step, so masks equal the reference exactly.
One difference in where work happens, not in results: the HQ feature map (fusion of the
early ViT feature and the final embedding) does not depend on the prompt, so `embed`
computes it once per image instead of once per click.

Weights come from an official merged `sam_hq_vit_*.pth`, or from a plain SAM checkpoint
plus an HQ plugin trained by `training/` (engines/hq_sam/weights.py has the layouts). A
SAM 2 checkpoint plus plugin builds HQ-SAM 2 instead (engines/hq_sam/sam2.py).
"""
from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
from torch import nn

from engines.files.checkpoints import checkpoint_identity, describe_checkpoint, load_into, load_state_dict
from engines.hq_sam.weights import (freeze_all_but_hq, has_hq_weights, hq_part_of, merge_hq_plugin,
                                    split_hq_checkpoint)
from engines.hq_sam.fast import predict_masks_folded
from engines.hosts.detect import SamConfig, detect, is_sam2_state, sam_config_from_state
from engines.hosts.geometry import sam_preprocess
from engines.hosts.runtime_slot import encoder_slot
from engines.hosts.sam import SamEngine
from engines.prompts import check_image
from engines.types import CheckpointError, Embedding, EngineError

HQ_ARCHS = ("vit_b", "vit_l", "vit_h", "vit_tiny")
# TinyViT's ImageNet classifier: in the class, never used by SAM, absent from some files.
UNUSED_KEYS = ("image_encoder.head.", "image_encoder.norm_head.")


def hq_modeling():
    """`segment_anything_hq.modeling`, imported on first use: the package imports timm,
    which costs seconds and warns about its own deprecated paths."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import segment_anything_hq.modeling as modeling
    return modeling


def build_hq_sam(config: SamConfig):
    """A random-initialised `segment_anything_hq` Sam of this shape, HQ parts trainable."""
    m = hq_modeling()
    grid = config.img_size // config.patch_size
    model = m.Sam(
        image_encoder=m.ImageEncoderViT(
            img_size=config.img_size, patch_size=config.patch_size, embed_dim=config.embed_dim,
            depth=config.depth, num_heads=config.num_heads, mlp_ratio=config.mlp_ratio,
            out_chans=config.prompt_dim, qkv_bias=config.qkv_bias,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
            window_size=config.window_size, global_attn_indexes=config.global_attn_indexes),
        prompt_encoder=m.PromptEncoder(
            embed_dim=config.prompt_dim, image_embedding_size=(grid, grid),
            input_image_size=(config.img_size, config.img_size), mask_in_chans=config.mask_in_chans),
        mask_decoder=m.MaskDecoderHQ(
            num_multimask_outputs=3,
            transformer=m.TwoWayTransformer(depth=config.decoder_depth, embedding_dim=config.prompt_dim,
                                            mlp_dim=config.decoder_mlp_dim, num_heads=config.decoder_heads),
            transformer_dim=config.prompt_dim, iou_head_depth=config.iou_head_depth,
            iou_head_hidden_dim=config.iou_head_hidden_dim, vit_dim=config.embed_dim),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375]).eval()
    freeze_all_but_hq(model)
    return model


def build_hq_architecture(arch: str):
    """An official HQ-SAM architecture (vit_b/l/h/tiny) with random weights."""
    if arch not in HQ_ARCHS:
        raise CheckpointError(f"unknown HQ-SAM architecture {arch!r}; choose one of {', '.join(HQ_ARCHS)}")
    hq_modeling()
    from segment_anything_hq import sam_model_registry
    return sam_model_registry[arch](checkpoint=None)


def tiny_hq_sam(img_size: int = 256, embed_dim: int = 64, depth: int = 2, num_heads: int = 2,
                prompt_dim: int = 32, seed: int = 0, decoder_mlp_dim: int = 64, window_size: int = 4,
                patch_size: int = 16):
    """engines.hosts.tiny.tiny_sam's shape with the HQ decoder. Modules are created in the same
    order, so its SAM weights equal `tiny_sam(same arguments)`'s; the HQ parts are extra."""
    torch.manual_seed(seed)
    return build_hq_sam(SamConfig(
        img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=2,
        window_size=window_size, global_attn_indexes=(depth - 1,), prompt_dim=prompt_dim,
        mask_in_chans=4, decoder_mlp_dim=decoder_mlp_dim, decoder_heads=2, iou_head_depth=1,
        iou_head_hidden_dim=32))


def guess_hq_arch(state: Mapping[str, torch.Tensor]) -> str | None:
    """vit_b/l/h/vit_tiny for official shapes, "tiny" for other ViT SAMs, else None
    (SAM 2 files included: HqSam2Engine reads those)."""
    found = detect(state)
    return found.arch if found.family in ("sam", "hq-sam") else None


def build_for_state(state: Mapping[str, torch.Tensor], arch: str | None = None, *,
                    num_heads: int | None = None, decoder_heads: int | None = None):
    """The HQ-SAM architecture a (HQ-)SAM state dict belongs to, randomly initialised."""
    arch = arch or guess_hq_arch(state)
    if arch in HQ_ARCHS:
        return build_hq_architecture(arch)
    if arch is None:
        raise CheckpointError(f"not a SAM checkpoint: it looks like {describe_checkpoint(state)}")
    config = sam_config_from_state(state, num_heads=num_heads, decoder_heads=decoder_heads)
    if config.arch != arch:
        raise CheckpointError(f"the checkpoint holds a {config.arch} model, not {arch}")
    return build_hq_sam(config)


def load_hq_state(model, state: Mapping[str, torch.Tensor], path, expected: str,
                  allow_missing: Callable[[str], bool] = lambda key: False) -> None:
    """load_into (one clear error), tolerating TinyViT's unused classifier and the keys
    `allow_missing` accepts (kept at their current values)."""
    own = model.state_dict()
    fill = {k: v for k, v in own.items() if k not in state and (allow_missing(k) or k.startswith(UNUSED_KEYS))}
    load_into(model, {**fill, **state}, path, expected)


def hq_from_sam_state(state: Mapping[str, torch.Tensor], arch_or_builder: str | Callable | None = None,
                      *, source: str | Path = "state dict", num_heads: int | None = None,
                      decoder_heads: int | None = None):
    """A plain SAM state dict loaded into the HQ architecture: every SAM key must fit,
    and only the HQ parts may be missing (they keep PyTorch's default initialisation,
    as in the official training). `arch_or_builder`: an arch name, a callable returning
    an HQ Sam, or None to infer the shape from the state dict; `source` names the file
    in errors."""
    model = arch_or_builder() if callable(arch_or_builder) else build_for_state(
        state, arch_or_builder, num_heads=num_heads, decoder_heads=decoder_heads)
    load_hq_state(model, state, source, "HQ-SAM (SAM weights + new HQ parts)",
                  allow_missing=lambda k: hq_part_of(k, "mask_decoder.") is not None)
    freeze_all_but_hq(model)
    return model


def hq_features(decoder, image_embed: torch.Tensor, interm_0: torch.Tensor,
                fusion: bool = True) -> torch.Tensor:
    """The prompt-independent HQ feature map (B, C/8, 4h, 4w), exactly as MaskDecoderHQ.forward.
    `fusion=False`: zeros, the paper's ablation of the HQ-Output Token without global-local
    fusion: the HQ token then reads only the decoder's upscaled mask features, through
    embedding_maskfeature (Table 3's "decoder feature + conv" row, specs/hq_sam.md §5)."""
    if not fusion:
        b, c, h, w = image_embed.shape
        return image_embed.new_zeros(b, decoder.transformer_dim // 8, 4 * h, 4 * w)
    return decoder.embedding_encoder(image_embed) + decoder.compress_vit_feat(interm_0.permute(0, 3, 1, 2))


def plugin_fusion(record: Mapping, path) -> bool:
    """A plugin's `fusion` flag (metadata); plugins saved before the flag fused."""
    fusion = record.get("fusion", True)
    if not isinstance(fusion, bool):
        raise CheckpointError(f"plugin {path}: its metadata's fusion is {fusion!r}, not true or false")
    return fusion


def select_hq_output(masks: torch.Tensor, iou_pred: torch.Tensor, multimask: bool, hq_token_only: bool):
    """MaskDecoderHQ.forward's selection: (B, 4 SAM + 1 HQ, h, w) -> one mask. Multimask
    takes SAM's best of its 3 candidates by predicted IoU; the HQ logit is added to it
    (or returned alone with `hq_token_only`); the score is SAM's."""
    n = masks.shape[1]
    if multimask:
        iou_pred, best = torch.max(iou_pred[:, 1:n - 1], dim=1)
        iou_pred = iou_pred.unsqueeze(1)
        multi = masks[:, 1:n - 1]
        masks_sam = multi[torch.arange(multi.size(0), device=multi.device), best].unsqueeze(1)
    else:
        iou_pred, masks_sam = iou_pred[:, 0:1], masks[:, 0:1]
    masks_hq = masks[:, n - 1:n]
    return (masks_hq if hq_token_only else masks_sam + masks_hq), iou_pred


class HqEncoderOutputs(nn.Module):
    """HQ-SAM's image encoder as one module with tensor outputs, for the CPU runtimes
    (engines/runtime): the embedding and the first global-attention block's feature, the
    only early feature MaskDecoderHQ reads (`interm_embeddings[0]`)."""
    NAMES = ("image_embed", "interm_0")

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embed, interm = self.encoder(x)
        return embed, interm[0]


class HqSamEngine(SamEngine):
    """SamEngine's prompt encoding and upsampling; HQ-SAM's encoder outputs and decoder.
    Always one mask out (the official multimask behaviour: SAM's best of 3 + M_hq)."""
    name = "hq-sam"
    runtime_capable = True   # through HqEncoderOutputs: one tensor in, two named out

    def __init__(self, model, *, backbone_key: str, device=None, exact: bool = False,
                 hq_token_only: bool = False, runtime: str | None = None,
                 encoder_key: str | None = None, fusion: bool = True):
        """`runtime`: the CPU encoder's runtime, as SamEngine's. `encoder_key`: what names
        the encoder's weights (default `backbone_key`); a plugin changes only the decoder,
        so one converted encoder serves every plugin on a checkpoint. `fusion=False`: the
        ablation without global-local fusion (hq_features), as its plugin was trained."""
        self.encoder_key = encoder_key or backbone_key
        super().__init__(model, backbone_key=backbone_key, device=device, exact=exact, runtime=runtime)
        self.hq_token_only = hq_token_only
        self.fusion = fusion

    def build_encoder_slot(self, runtime: str | None):
        return encoder_slot(HqEncoderOutputs(self.model.image_encoder), self, self.input_side, runtime,
                            checkpoint_key=self.encoder_key)

    @classmethod
    def from_checkpoint(cls, path: str | Path, arch: str | None = None, device=None, exact: bool = False,
                        plugin: str | Path | None = None, hq_token_only: bool = False,
                        num_heads: int | None = None, decoder_heads: int | None = None,
                        runtime: str | None = None):
        """`num_heads` / `decoder_heads`: for ViT SAMs whose head counts are not the
        defaults (see sam_config_from_state); a SAM 2 file builds HQ-SAM 2 (engines/hq_sam/sam2.py).
        `runtime`: the CPU encoder's runtime (SamEngine's)."""
        state = load_state_dict(path, expected=f"HQ-SAM {arch or '(or SAM + plugin)'}")
        if is_sam2_state(state):
            from engines.hq_sam.sam2 import HqSam2Engine
            return HqSam2Engine.from_state(state, path, arch=arch, device=device, exact=exact,
                                           plugin=plugin, hq_token_only=hq_token_only, runtime=runtime)
        arch = arch or guess_hq_arch(state)
        if arch is None:
            raise CheckpointError(f"checkpoint {path} is not a SAM or HQ-SAM checkpoint: it looks "
                                  f"like {describe_checkpoint(state)}")
        key = encoder_key = f"hq-sam:{arch}:{checkpoint_identity(path)}"
        fusion = True
        if plugin is None and not has_hq_weights(state):
            raise CheckpointError(
                f"checkpoint {path} is a plain {describe_checkpoint(state)} checkpoint with no HQ-SAM "
                "weights (mask_decoder.hf_token, hf_mlp and the fusion layers): use an official "
                "sam_hq_vit_*.pth (`annotator models download hq-sam-vit-b`), or pass plugin= an HQ "
                f"plugin trained on this checkpoint (`annotator train hq-sam --backbone {path}`)")
        elif plugin is not None:   # a plugin replaces any HQ weights the file has (fine-tuned from them)
            from engines.files.plugins import load_plugin
            if has_hq_weights(state):
                state = split_hq_checkpoint(state)[0]
            plugin_state, record = load_plugin(plugin, engine="hq-sam", backbone_arch=f"sam:{arch}",
                                               backbone_checkpoint=checkpoint_identity(path))
            fusion = plugin_fusion(record, plugin)
            state = merge_hq_plugin(state, plugin_state)
            key += f"+{checkpoint_identity(plugin)}"
        model = build_for_state(state, arch, num_heads=num_heads, decoder_heads=decoder_heads)
        load_hq_state(model, state, path, expected=f"HQ-SAM {arch}")
        return cls(model, backbone_key=key, device=device, exact=exact, hq_token_only=hq_token_only,
                   runtime=runtime, encoder_key=encoder_key, fusion=fusion)

    def run_encoder(self, image: np.ndarray):
        """(checked image, resized image, (embedding, [interm_0, ...])), as SamPredictor.set_image."""
        if self.encoder is None:
            return super().run_encoder(image)
        image = check_image(image)
        resized, x = sam_preprocess(self.model, self.transform, image, self.device)
        out = self.encoder.named(x)
        return image, resized, (out["image_embed"], [out["interm_0"]])

    @torch.no_grad()
    def embed(self, image: np.ndarray) -> Embedding:
        image, resized, (embed, interm) = self.run_encoder(image)
        embed, interm_0 = embed.float(), interm[0].float()
        # fp32 outside autocast, as the reference decoder computes it
        hq = hq_features(self.model.mask_decoder, embed, interm_0, self.fusion)
        return Embedding(self.backbone_key, tuple(image.shape[:2]), tuple(resized.shape[:2]),
                         {"image_embed": embed, "interm_0": interm_0, "hq_features": hq})

    def decode(self, emb: Embedding, prompt, multimask: bool):
        """(1, 1, h, w) logits and (1, 1) SAM IoU score, as MaskDecoderHQ.forward."""
        f = emb.features
        if "image_embed" not in f or not ("hq_features" in f or "interm_0" in f):
            raise EngineError(f"embedding from backbone {emb.backbone_key!r} lacks HQ-SAM's "
                              "features (interm_0 / hq_features); embed the image with this engine")
        image_embed = f["image_embed"].to(self.device)
        decoder = self.model.mask_decoder
        hq = f["hq_features"].to(self.device) if "hq_features" in f else \
            hq_features(decoder, image_embed, f["interm_0"].to(self.device), self.fusion)
        sparse, dense = self.encode_prompt(emb, prompt)
        # exact: the reference's ops; otherwise the HQ mask's last conv is folded into
        # the prompt's kernel (engines/hq_sam/fast.py: same value, ~2.4 GFLOP less per click)
        predict = decoder.predict_masks if self.exact else partial(predict_masks_folded, decoder)
        masks, iou_pred = predict(
            image_embeddings=image_embed, image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, hq_features=hq)
        return select_hq_output(masks, iou_pred, multimask, self.hq_token_only)
