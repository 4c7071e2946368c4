"""The steps of `MaskDecoder.predict_masks` that every rewrite of it shares (the fast
SAM and SAM 2 decoders, HQ-SAM's folded decoder, HQ-SAM 2's decoder): the output-token
concatenation, the image / positional-encoding batch, the transformer call, the
hypernetwork masks and SAM 2's object score. Each is the reference's op sequence, so a
decoder assembled from them is bit-exact with the reference where it does not
deliberately broadcast instead of copying (`broadcast=True`: same values, no copy).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn


def output_tokens(own: Sequence[torch.Tensor], sparse_prompt_embeddings: torch.Tensor) -> torch.Tensor:
    """The decoder's own token weights (e.g. [iou, mask] or SAM 2's [obj_score, iou,
    mask]), one copy per prompt, followed by the prompts' sparse embeddings: (B, T, C)."""
    tokens = torch.cat(list(own), dim=0).unsqueeze(0).expand(sparse_prompt_embeddings.size(0), -1, -1)
    return torch.cat((tokens, sparse_prompt_embeddings), dim=1)


def sam2_own_tokens(decoder: nn.Module) -> tuple[list[torch.Tensor], int]:
    """SAM 2's own token weights in order, and the offset `s` of the IoU token (1 when
    the model has an object-score token before it, else 0)."""
    s = 1 if decoder.pred_obj_scores else 0
    own = ([decoder.obj_score_token.weight] if s else []) + [decoder.iou_token.weight,
                                                             decoder.mask_tokens.weight]
    return own, s


def image_batch(image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                dense_prompt_embeddings: torch.Tensor, n: int, *, repeat_image: bool = True,
                broadcast: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(src, pos_src) for n prompts: the image (repeated per prompt when `repeat_image`,
    else one per prompt already) plus the dense prompt embeddings, and the positional
    encoding per prompt. `broadcast`: one image and one encoding are expanded, not
    copied (same values)."""
    if not repeat_image:
        assert image_embeddings.shape[0] == n
        src = image_embeddings + dense_prompt_embeddings
    elif broadcast and image_embeddings.shape[0] == 1:
        src = (image_embeddings + dense_prompt_embeddings).expand(n, -1, -1, -1)
    else:
        src = torch.repeat_interleave(image_embeddings, n, dim=0) + dense_prompt_embeddings
    if broadcast and image_pe.shape[0] == 1:
        return src, image_pe.expand(n, -1, -1, -1)
    return src, torch.repeat_interleave(image_pe, n, dim=0)


def run_transformer(decoder: nn.Module, src: torch.Tensor, pos_src: torch.Tensor,
                    tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two-way transformer: (token outputs (B, T, C), image map (B, C, h, w))."""
    b, c, h, w = src.shape
    hs, src = decoder.transformer(src, pos_src, tokens)
    return hs, src.transpose(1, 2).view(b, c, h, w)


def hypernetwork_in(mlps: Iterable[nn.Module], mask_tokens_out: torch.Tensor) -> torch.Tensor:
    """Each mask token through its hypernetwork MLP: (B, K, C') kernels."""
    return torch.stack([mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(mlps)], dim=1)


def hyper_masks(hyper_in: torch.Tensor, upscaled: torch.Tensor) -> torch.Tensor:
    """(B, K, C') kernels applied to the (B, C', H, W) upscaled map: (B, K, H, W) logits."""
    b, c, h, w = upscaled.shape
    return (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)


def object_score_logits(decoder: nn.Module, hs: torch.Tensor, iou_pred: torch.Tensor) -> torch.Tensor:
    """SAM 2's object-score logit (B, 1), or 10 (present) when the model has no head."""
    if decoder.pred_obj_scores:
        return decoder.pred_obj_score_head(hs[:, 0, :])
    return 10.0 * iou_pred.new_ones(iou_pred.shape[0], 1)
