"""sam-amg / sam2-amg on exact hosts equal SamAutomaticMaskGenerator /
SAM2AutomaticMaskGenerator on the same tiny random weights: same masks in the same order,
the same scores, boxes, clicks, stability scores and crops."""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import torch
from amg_helpers import LOOSE, engines, photo, reference_generator


@pytest.fixture(autouse=True)
def one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


CASES = [   # (family, image (h, w), options beyond LOOSE)
    ("sam", (64, 80), {}),
    ("sam", (150, 200), {"crop_n_layers": 1, "points_per_batch": 7}),
    ("sam", (200, 120), {"min_mask_region_area": 30}),
    ("sam", (150, 200), {"pred_iou_thresh": 0.9, "stability_score_thresh": 0.4,
                         "stability_score_offset": 0.01}),
    ("sam2", (64, 80), {}),
    ("sam2", (150, 200), {"crop_n_layers": 1, "crop_n_points_downscale_factor": 2}),
    ("sam2", (200, 120), {"multimask_output": False, "points_per_batch": 64}),
    ("sam2", (150, 200), {"pred_iou_thresh": 0.485, "stability_score_thresh": 0.4,
                          "stability_score_offset": 0.01}),
]


@pytest.mark.parametrize("family, size, extra", CASES)
def test_equals_the_reference_generator(family, size, extra):
    options = {**LOOSE, **extra}
    ours, model = engines(family, exact=True)
    img = photo(*size)
    found = ours.propose(ours.embed(img), options, image=img)
    with _quiet():
        records = reference_generator(family, model, **options).generate(img)
    assert len(records) > 1, "the case must exercise ordering (loosen it)"
    assert len(found) == len(records)
    for i, rec in enumerate(records):
        assert np.array_equal(found.masks[i], rec["segmentation"]), i
        assert abs(found.scores[i] - rec["predicted_iou"]) <= 1e-5
        x, y, w, h = rec["bbox"]
        assert found.boxes[i].tolist() == [x, y, x + w + 1, y + h + 1]   # extent, not last pixel
        src = found.sources[i]
        assert np.allclose(src["point"], rec["point_coords"][0])
        assert abs(src["stability"] - rec["stability_score"]) <= 1e-6
        cx, cy, cw, ch = rec["crop_box"]
        assert src["crop"] == [cx, cy, cx + cw, cy + ch]
    assert found.masks.shape[1:] == size and found.engine == ours.name


def test_the_reference_defaults_are_ours():
    """With random weights nearly nothing passes the defaults; both say so alike."""
    for family in ("sam", "sam2"):
        ours, model = engines(family, exact=True)
        img = photo(96, 128)
        found = ours.propose(ours.embed(img), {"points_per_side": 8})
        with _quiet():
            records = reference_generator(family, model, points_per_side=8).generate(img)
        assert len(found) == len(records)
        ref = reference_generator(family, model)
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh",
                     "points_per_batch", "crop_overlap_ratio"):
            assert getattr(ours.defaults, name) == getattr(ref, name), (family, name)


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # SAM 2's "skipping the CUDA post-processing"
        yield
