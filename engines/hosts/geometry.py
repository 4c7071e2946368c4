"""Input geometry of the SAM and SAM 2 hosts, shared by the engines and training's
adapters (so what trains is what the engine runs): image preprocessing, SAM 2's feature
maps, and prompts as the prompt encoders take them.

Prompt coordinates here are input-frame pixels (the resized / stretched image the
encoder sees); the engines map a click from the original image first, as the reference
predictors do, and training's prompts are drawn in that frame already.
"""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch


# --- SAM: resize the longest side, pad (as SamPredictor) ------------------------------
def sam_preprocess(model, transform, image: np.ndarray, device) -> tuple[np.ndarray, torch.Tensor]:
    """(resized image, normalised and padded (1, 3, S, S) input), as SamPredictor.set_image."""
    resized = transform.apply_image(image)
    x = torch.as_tensor(resized, device=device).permute(2, 0, 1).contiguous()[None]
    return resized, model.preprocess(x)


def sam_prompt_inputs(points, labels, box, device):
    """Input-frame points (K, 2) with labels (K,) and a box (4,) -> the `points=` and
    `boxes=` arguments of segment_anything's PromptEncoder (None where absent)."""
    encoded_points = encoded_box = None
    if points is not None and len(points):
        encoded_points = (torch.as_tensor(np.asarray(points), dtype=torch.float, device=device)[None],
                          torch.as_tensor(np.asarray(labels), dtype=torch.int, device=device)[None])
    if box is not None:
        encoded_box = torch.as_tensor(np.asarray(box), dtype=torch.float, device=device).reshape(-1, 4)
    return encoded_points, encoded_box


# --- SAM 2: stretch to S x S (as SAM2ImagePredictor) ----------------------------------
def sam2_feat_sizes(side: int) -> list[tuple[int, int]]:
    """The three feature levels' (h, w) for an S x S input (the predictor hard-codes
    them for 1024 px; here they follow the model's own image_size)."""
    return [(side // 4, side // 4), (side // 8, side // 8), (side // 16, side // 16)]


def sam2_feature_maps(model, images: torch.Tensor, autocast=None) -> dict[str, torch.Tensor]:
    """Backbone, no-memory embedding and per-level reshape for a batch (B, 3, S, S), as
    SAM2ImagePredictor.set_image: {"image_embed", "high_res_0", "high_res_1"}. `autocast`:
    a context for the backbone (the engine's device autocast)."""
    with autocast if autocast is not None else nullcontext():
        backbone_out = model.forward_image(images)
        _, feats, _, _ = model._prepare_backbone_features(backbone_out)
    if model.directly_add_no_mem_embed:
        feats[-1] = feats[-1] + model.no_mem_embed
    b = images.shape[0]
    maps = [f.permute(1, 2, 0).reshape(b, -1, *size)
            for f, size in zip(feats, sam2_feat_sizes(model.image_size))]
    return {"image_embed": maps[-1], "high_res_0": maps[0], "high_res_1": maps[1]}


def sam2_prompt_points(points, labels, box, device):
    """Box corners (labels 2, 3) first, then clicks, as SAM2ImagePredictor orders them:
    (coords (1, K, 2), labels (1, K)) or None when there is neither."""
    coords, kinds = [], []
    if box is not None:
        coords.append(torch.as_tensor(np.asarray(box), dtype=torch.float, device=device).reshape(1, 2, 2))
        kinds.append(torch.tensor([[2, 3]], dtype=torch.int, device=device))
    if points is not None and len(points):
        coords.append(torch.as_tensor(np.asarray(points), dtype=torch.float, device=device).reshape(1, -1, 2))
        kinds.append(torch.as_tensor(np.asarray(labels), dtype=torch.int, device=device).reshape(1, -1))
    if not coords:
        return None
    return torch.cat(coords, dim=1), torch.cat(kinds, dim=1)


def sam2_scale_coords(coords: torch.Tensor, image_size: tuple[int, int], side: int) -> torch.Tensor:
    """Original-image pixels -> input-frame pixels, with the same operations in the same
    order as SAM2Transforms.transform_coords."""
    h, w = image_size
    coords = coords.clone()
    coords[..., 0] = coords[..., 0] / w
    coords[..., 1] = coords[..., 1] / h
    return coords * side
