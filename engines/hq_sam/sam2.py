"""HQ-SAM 2: the HQ output token on SAM 2.1's mask decoder (spec §2.6, the official
`sam-hq2/` beta, which is not on PyPI, so this follows its MaskDecoderHQ).

`HqSam2Decoder` holds only the HQ parameters (hf_token, hf_mlp, embedding_maskfeature)
and runs the host `sam2` MaskDecoder's frozen submodules at call time: no weight is
copied, and the host's state dict is untouched. Token order is [obj_score, iou, 4 mask,
hf]; the HQ mask is `hf_mlp(hf token) . embedding_maskfeature(upscaled)` (SAM 2's
upscaling already fuses the high-resolution FPN features, so there is no separate fusion
block); multimask returns SAM 2's 3 masks, each plus M_hq.

`HqSam2Engine` is the `hq-sam` engine on a SAM 2 host; `HqSamEngine.from_checkpoint`
builds it when given a SAM 2 checkpoint (plus plugin, or the official merged file).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from engines.hosts import sam2 as sam2_engine
from engines.hosts.detect import guess_sam2_arch
from engines.files.checkpoints import checkpoint_identity, describe_checkpoint, load_into
from engines.hosts import decoding
from engines.hosts.fast.upscaling import enable_fast_upscaling, sam2_upscale
from engines.hq_sam.fast import folded_mask
from engines.hq_sam.weights import HQ2_PARTS, has_hq_weights, split_hq_checkpoint
from engines.types import CheckpointError, Embedding


class HqSam2Decoder(nn.Module):
    """The HQ parameters for a host `sam2.modeling.sam.mask_decoder.MaskDecoder`."""

    parts = HQ2_PARTS

    def __init__(self, host: nn.Module):
        from sam2.modeling.sam2_utils import MLP, LayerNorm2d
        super().__init__()
        d = host.transformer_dim
        self.hf_token = nn.Embedding(1, d)
        self.hf_mlp = MLP(d, d, d // 8, 3)
        self.embedding_maskfeature = nn.Sequential(
            nn.Conv2d(d // 8, d // 4, 3, 1, 1), LayerNorm2d(d // 4), nn.GELU(),
            nn.Conv2d(d // 4, d // 8, 3, 1, 1))
        self._host = [host]   # a list, so nn.Module does not register (or save) the host
        # fast engines and training: the positional encoding broadcast, not copied, and the
        # high-resolution features added inside the upscaling (engines/hosts/fast/upscaling.py). Same
        # values up to rounding; off for exact engines (the reference's ops, bit for bit)
        self.fast = False

    @property
    def host(self) -> nn.Module:
        return self._host[0]

    def attach(self, host: nn.Module) -> "HqSam2Decoder":
        """Run on `host` from now on (e.g. after a deepcopy, which copies the host too)."""
        if host.transformer_dim != self.hf_token.weight.shape[1]:
            raise ValueError(f"HQ parts of width {self.hf_token.weight.shape[1]} cannot run on a "
                             f"decoder of width {host.transformer_dim}")
        self._host = [host]
        return self

    def predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings,
                      dense_prompt_embeddings, repeat_image: bool, high_res_features=None,
                      sam_masks: bool = True):
        """-> SAM's 4 mask logits, the HQ logit (B, 1, h, w), IoU (B, 4), mask tokens
        (B, 5, C) and the object-score logit, as the official HQ decoder computes them.
        `sam_masks=False`: SAM's logits are not needed (None), the HQ mask alone is."""
        host = self.host
        own, s = decoding.sam2_own_tokens(host)
        tokens = decoding.output_tokens(own + [self.hf_token.weight], sparse_prompt_embeddings)
        src, pos_src = decoding.image_batch(image_embeddings, image_pe, dense_prompt_embeddings,
                                            tokens.shape[0], repeat_image=repeat_image,
                                            broadcast=self.fast)
        hs, src = decoding.run_transformer(host, src, pos_src, tokens)
        n = host.num_mask_tokens   # SAM's 4; the HQ token follows them
        mask_tokens_out = hs[:, s + 1: s + 2 + n, :]
        upscaled = sam2_upscale(host, src, high_res_features, fused=self.fast)
        hyper = decoding.hypernetwork_in(list(host.output_hypernetworks_mlps) + [self.hf_mlp],
                                         mask_tokens_out)
        masks_sam = decoding.hyper_masks(hyper[:, :n], upscaled) if sam_masks else None
        feature = self.embedding_maskfeature
        if self.fast:   # the last conv folded into the HQ kernel (engines/hq_sam/fast.py; same value)
            hidden = feature[2](feature[1](feature[0](upscaled)))
            masks_hq = folded_mask(hidden, hyper[:, n], feature[3])
        else:
            masks_hq = decoding.hyper_masks(hyper[:, n:], feature(upscaled))
        iou_pred = host.iou_prediction_head(hs[:, s, :])
        return (masks_sam, masks_hq, iou_pred, mask_tokens_out,
                decoding.object_score_logits(host, hs, iou_pred))

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                multimask_output: bool, repeat_image: bool, high_res_features=None,
                hq_token_only: bool = False):
        """Same signature and outputs as the host's forward, plus `hq_token_only`."""
        h = self.host
        stability = not multimask_output and h.dynamic_multimask_via_stability and not self.training
        masks_sam, masks_hq, iou_pred, tokens_out, obj = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
            repeat_image, high_res_features, sam_masks=not hq_token_only or stability)
        n = h.num_mask_tokens
        if multimask_output:
            iou_pred = iou_pred[:, 1:]
            masks_sam = None if masks_sam is None else masks_sam[:, 1:]
        elif stability:
            masks_sam, iou_pred = h._dynamic_multimask_via_stability(masks_sam, iou_pred)
        else:
            iou_pred = iou_pred[:, 0:1]
            masks_sam = None if masks_sam is None else masks_sam[:, 0:1]
        if multimask_output and h.use_multimask_token_for_obj_ptr:
            sam_tokens_out = tokens_out[:, 1:n]
        else:
            sam_tokens_out = tokens_out[:, 0:1]
        masks = masks_hq if hq_token_only else masks_sam + masks_hq
        return masks, iou_pred, sam_tokens_out, obj


class HqSam2Engine(sam2_engine.Sam2Engine):
    """Sam2Engine with the HQ decoder. Embeddings are plain SAM 2 ones (the HQ part
    needs no extra encoder output), so the backbone key is the SAM 2 engine's."""
    name = "hq-sam"

    def __init__(self, model, hq_decoder: HqSam2Decoder, *, backbone_key: str, device=None,
                 exact: bool = False, hq_token_only: bool = False, runtime: str | None = None):
        super().__init__(model, backbone_key=backbone_key, device=device, exact=exact, runtime=runtime)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.hq_decoder = hq_decoder.attach(self.model.sam_mask_decoder).to(self.device).eval()
        if not exact:   # fused LayerNorm2d (engines/hosts/fast/upscaling.py); exact keeps SAM 2's own
            enable_fast_upscaling(self.hq_decoder.embedding_maskfeature)
        self.hq_decoder.fast = not exact
        self.hq_token_only = hq_token_only

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor], path: str | Path, arch: str | None = None,
                   device=None, exact: bool = False, plugin: str | Path | None = None,
                   hq_token_only: bool = False, runtime: str | None = None):
        arch = arch or guess_sam2_arch(state)
        if arch is None:
            raise CheckpointError(f"checkpoint {path} is not a SAM 2.1 checkpoint: it looks like "
                                  f"{describe_checkpoint(state)}")
        identity = checkpoint_identity(path)
        if has_hq_weights(state):   # the official merged HQ-SAM 2 file
            sam_state, hq_state = split_hq_checkpoint(state)
            source = path
        elif plugin is None:
            raise CheckpointError(
                f"checkpoint {path} is a plain SAM 2.1 ({arch}) checkpoint with no HQ-SAM weights: "
                "pass plugin= an HQ plugin trained on it (`annotator train hq-sam --backbone "
                f"{path}`), or use the official sam2.1_hq_hiera_large.pt")
        if plugin is not None:   # replaces the file's own HQ weights, if it has any
            from engines.files.plugins import load_plugin
            hq_state, _ = load_plugin(plugin, engine="hq-sam", backbone_arch=f"sam2:{arch}",
                                      backbone_checkpoint=identity)
            source = plugin
            sam_state = split_hq_checkpoint(state)[0] if has_hq_weights(state) else state
        model = sam2_engine.build_sam2_architecture(arch)
        load_into(model, sam_state, path, expected=f"SAM 2.1 {arch}")
        hq = HqSam2Decoder(model.sam_mask_decoder)
        load_into(hq, hq_state, source, expected=f"the HQ-SAM 2 parts ({', '.join(HQ2_PARTS)}) "
                  f"for SAM 2.1 {arch}")
        return cls(model, hq, backbone_key=f"sam2:{arch}:{identity}", device=device, exact=exact,
                   hq_token_only=hq_token_only, runtime=runtime)

    def decode(self, emb: Embedding, prompt, multimask: bool):
        sparse, dense = self.encode_prompt(emb, prompt)
        f = {k: v.to(self.device) for k, v in emb.features.items()}
        low_res, scores, _, object_logit = self.hq_decoder(
            image_embeddings=f["image_embed"], image_pe=self.model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=multimask, repeat_image=False,
            high_res_features=[f["high_res_0"], f["high_res_1"]], hq_token_only=self.hq_token_only)
        return low_res, scores, object_logit
