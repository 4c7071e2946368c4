"""engines/auto against segment_anything's utils/amg.py on random inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.utils import amg as ref

from engines import auto


@pytest.mark.parametrize("seed", range(4))
def test_pure_functions_equal_the_reference(seed):
    rng = np.random.default_rng(seed)
    logits = torch.as_tensor(rng.normal(0, 2, (6, 40, 50)).astype(np.float32))
    logits[0] = -5                                     # an empty mask
    masks = logits > 0
    assert torch.equal(auto.masks_to_boxes(masks), ref.batched_mask_to_box(masks))
    torch.testing.assert_close(auto.stability_score(logits, 0.0, 1.0),     # empty: 0/0 = nan
                               ref.calculate_stability_score(logits, 0.0, 1.0),
                               rtol=0, atol=0, equal_nan=True)
    crop, whole = [10, 5, 45, 40], [0, 0, 50, 40]
    boxes = auto.masks_to_boxes(masks)
    assert torch.equal(auto.near_crop_edge(boxes, crop, whole),
                       ref.is_box_near_crop_edge(boxes, crop, whole))
    assert torch.equal(auto.uncrop_masks(masks[:, :35, :35], crop, 40, 50),
                       ref.uncrop_masks(masks[:, :35, :35], crop, 40, 50))
    for mode in ("holes", "islands"):
        ours, changed = auto.remove_small_regions(masks[1].numpy(), 15, mode)
        theirs, ref_changed = ref.remove_small_regions(masks[1].numpy(), 15, mode)
        assert changed == ref_changed and np.array_equal(ours, theirs)
    for size, layers, ratio in (((150, 200), 2, 512 / 1500), ((77, 31), 1, 0.2)):
        assert auto.crop_boxes(size, layers, ratio) == ref.generate_crop_boxes(size, layers, ratio)
    for n, layers, down in ((32, 0, 1), (6, 2, 2)):
        for a, b in zip(auto.layer_point_grids(n, layers, down),
                        ref.build_all_layer_point_grids(n, layers, down)):
            assert np.array_equal(a, b)
