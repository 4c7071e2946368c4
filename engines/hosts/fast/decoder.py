"""SAM's and SAM 2's mask decoders rearranged for a click on a CPU: same value up to
float rounding, for inference only (autograd off; `exact=True` engines and training keep
the reference's `predict_masks`). Timings: docs/benchmarks.md.

`enable_fast_decoder` installs, on one decoder instance (parameters, state dict and
module tree untouched), through the patching idiom (engines/hosts/fast/patching.py):
- the rearranged two-way transformer (engines/hosts/fast/transformer.py), which honours
  plugins' declared layer hooks (engines/hosts/fast/layer_hooks.py);
- the fast upscaling layers (engines/hosts/fast/upscaling.py), HQ-SAM's convolution
  stacks included;
- a `predict_masks` that broadcasts the image and positional encoding to the prompts
  instead of copying them, and (SAM 2) adds the high-resolution features inside the
  upscaling's interleave; assembled from engines/hosts/decoding.py.
Works on the decoders of segment_anything, segment_anything_hq and sam2.
"""
from __future__ import annotations

import torch
from torch import nn

from engines.hosts import decoding
from engines.hosts.fast.patching import patch, reference, unpatch
from engines.hosts.fast.transformer import FirstLayerCache, fast_transformer_forward
from engines.hosts.fast.upscaling import (FAST_UPSCALING, convt_matmul, enable_fast_upscaling,
                                          sam2_upscale)

__all__ = ["enable_fast_decoder", "disable_fast_decoder", "enable_fast_upscaling", "sam2_upscale",
           "convt_matmul", "FAST_DECODER", "HQ_SEQUENCES"]

FAST_DECODER = "fast-decoder"   # the patch tag of the transformer and predict_masks
# HQ-SAM's convolution stacks (per image: the first two; per prompt: the last)
HQ_SEQUENCES = ("compress_vit_feat", "embedding_encoder", "embedding_maskfeature")


def sam_predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings):
    """segment_anything's MaskDecoder.predict_masks with the image broadcast to the
    prompts instead of copied (`repeat_interleave`) when there is one image."""
    if torch.is_grad_enabled() or image_embeddings.shape[0] != 1:
        return reference(self, FAST_DECODER)(image_embeddings, image_pe, sparse_prompt_embeddings,
                                             dense_prompt_embeddings)
    tokens = decoding.output_tokens([self.iou_token.weight, self.mask_tokens.weight],
                                    sparse_prompt_embeddings)
    src, pos_src = decoding.image_batch(image_embeddings, image_pe, dense_prompt_embeddings,
                                        tokens.shape[0], broadcast=True)
    hs, src = decoding.run_transformer(self, src, pos_src, tokens)
    mask_tokens_out = hs[:, 1:(1 + self.num_mask_tokens), :]
    hyper_in = decoding.hypernetwork_in(self.output_hypernetworks_mlps, mask_tokens_out)
    masks = decoding.hyper_masks(hyper_in, self.output_upscaling(src))
    return masks, self.iou_prediction_head(hs[:, 0, :])


def sam2_predict_masks(self, image_embeddings, image_pe, sparse_prompt_embeddings,
                       dense_prompt_embeddings, repeat_image, high_res_features=None):
    """sam2's MaskDecoder.predict_masks with the positional encoding broadcast instead of
    copied per call, and the high-resolution features added inside the upscaling's
    interleave (`convt_matmul`). Same outputs, same order."""
    if torch.is_grad_enabled() or repeat_image or image_pe.shape[0] != 1:
        return reference(self, FAST_DECODER)(image_embeddings, image_pe, sparse_prompt_embeddings,
                                             dense_prompt_embeddings, repeat_image, high_res_features)
    own, s = decoding.sam2_own_tokens(self)
    tokens = decoding.output_tokens(own, sparse_prompt_embeddings)
    src, pos_src = decoding.image_batch(image_embeddings, image_pe, dense_prompt_embeddings,
                                        tokens.shape[0], repeat_image=False, broadcast=True)
    hs, src = decoding.run_transformer(self, src, pos_src, tokens)
    mask_tokens_out = hs[:, s + 1:(s + 1 + self.num_mask_tokens), :]
    upscaled = sam2_upscale(self, src, high_res_features, fused=True)
    hyper_in = decoding.hypernetwork_in(self.output_hypernetworks_mlps, mask_tokens_out)
    masks = decoding.hyper_masks(hyper_in, upscaled)
    iou_pred = self.iou_prediction_head(hs[:, s, :])
    return masks, iou_pred, mask_tokens_out, decoding.object_score_logits(self, hs, iou_pred)


_PREDICT_MASKS = {"segment_anything.modeling.mask_decoder": sam_predict_masks,
                  "sam2.modeling.sam.mask_decoder": sam2_predict_masks}


def _upscaling_modules(decoder: nn.Module) -> list[nn.Module]:
    extra = [m for name in HQ_SEQUENCES
             if isinstance(getattr(decoder, name, None), nn.Sequential) for m in getattr(decoder, name)]
    return [*decoder.output_upscaling, *extra]


def enable_fast_decoder(decoder: nn.Module) -> None:
    """Install the rearranged transformer and upscaling on this decoder instance (SAM,
    HQ-SAM or SAM 2); idempotent, undone by `disable_fast_decoder`."""
    transformer = decoder.transformer
    if patch(transformer, "forward", fast_transformer_forward, FAST_DECODER):
        transformer._fast_first = FirstLayerCache()
    enable_fast_upscaling(decoder.output_upscaling)
    for name in HQ_SEQUENCES:
        if isinstance(getattr(decoder, name, None), nn.Sequential):
            enable_fast_upscaling(getattr(decoder, name))
    fast = _PREDICT_MASKS.get(type(decoder).__module__)
    if fast is not None:
        patch(decoder, "predict_masks", fast, FAST_DECODER)


def disable_fast_decoder(decoder: nn.Module) -> None:
    """Back to the reference modules (an exact engine on a model a fast one patched)."""
    if unpatch(decoder.transformer, FAST_DECODER):
        vars(decoder.transformer).pop("_fast_first", None)
    for module in _upscaling_modules(decoder):
        unpatch(module, FAST_UPSCALING)
    unpatch(decoder, FAST_DECODER)
