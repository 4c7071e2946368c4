"""Shared by the sam_amg tests: tiny hosts and the reference generators on the same weights."""
from __future__ import annotations

import copy

import numpy as np

from engines.hosts import Sam2Engine, SamEngine, tiny_sam, tiny_sam2
from engines.sam_amg import Sam2AmgEngine, SamAmgEngine

# low thresholds: random tiny weights would pass nothing through the defaults, which
# would make "equal to the reference" trivially true
LOOSE = dict(points_per_side=6, points_per_batch=10, pred_iou_thresh=0.0,
             stability_score_thresh=0.0, box_nms_thresh=1.0, crop_nms_thresh=1.0)


def photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    img[h // 5: h // 2, w // 5: 3 * w // 4] = (220, 40, 40)
    img[h // 2:, : w // 3] = (30, 200, 60)
    return img


def engines(family: str, exact: bool, seed: int = 1):
    """(our proposer, the model the reference gets: an independent copy of the weights)."""
    model = tiny_sam(seed=seed) if family == "sam" else tiny_sam2(seed=seed)
    reference_model = copy.deepcopy(model)
    host_class, amg_class = (SamEngine, SamAmgEngine) if family == "sam" else (Sam2Engine, Sam2AmgEngine)
    return amg_class(host_class(model, backbone_key="tiny", device="cpu", exact=exact)), reference_model


def reference_generator(family: str, model, **options):
    if family == "sam":
        from segment_anything import SamAutomaticMaskGenerator
        return SamAutomaticMaskGenerator(model, **options)
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
    gen = SAM2AutomaticMaskGenerator(model, **options)
    s = model.image_size // 4      # the predictor hard-codes 1024 px feature sizes
    gen.predictor._bb_feat_sizes = [(s, s), (s // 2, s // 2), (s // 4, s // 4)]
    return gen
