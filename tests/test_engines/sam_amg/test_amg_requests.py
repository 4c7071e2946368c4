"""sam-amg as a user meets it: options out of range and unknown ones are one clear
OptionsError, a cancelled run stops between batches, crops need the pixels, the router
routes "auto" to it as soon as a SAM checkpoint is installed, and nothing is changed."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from amg_helpers import LOOSE, engines, photo

from engines.router import Router
from engines.sam_amg import SamAmgEngine
from engines.types import CancelledError, OptionsError, Proposer


@pytest.mark.parametrize("options, message", [
    ({"points_per_side": 0}, "points_per_side must be an integer >= 1, got 0"),
    ({"points_per_batch": 0}, "points_per_batch must be an integer >= 1, got 0"),
    ({"pred_iou_thresh": 1.5}, "pred_iou_thresh must be between 0 and 1, got 1.5"),
    ({"stability_score_thresh": -0.1}, "stability_score_thresh must be between 0 and 1, got -0.1"),
    ({"box_nms_thresh": float("nan")}, "box_nms_thresh must be a finite number, got nan"),
    ({"crop_n_layers": -1}, "crop_n_layers must be an integer >= 0, got -1"),
    ({"points_per_side": 2.5}, "points_per_side must be a whole number, got 2.5"),
    ({"points_per_side": "8"}, "points_per_side must be a number, got '8'"),
    ({"multimask_output": 1}, "multimask_output must be true or false, got 1"),
    ({"pointz_per_side": 8}, "unknown option(s) pointz_per_side; known: points_per_side"),
])
def test_bad_options_are_one_clear_line(options, message):
    engine, _ = engines("sam", exact=False)
    emb = engine.embed(photo(48, 64))
    with pytest.raises(OptionsError) as info:
        engine.propose(emb, options)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_cancelled_run_stops_between_batches_and_leaves_the_embedding_alone():
    engine, _ = engines("sam", exact=False)
    emb = engine.embed(photo(48, 64))
    before = emb.features["image_embed"].clone()
    polls = []

    def cancel():
        polls.append(1)
        return len(polls) > 2           # let two batches run, stop before the third
    with pytest.raises(CancelledError):
        engine.propose(emb, {**LOOSE, "points_per_side": 6, "points_per_batch": 4}, cancel=cancel)
    assert len(polls) == 3              # 36 clicks are 9 batches: it did not go on
    assert torch.equal(emb.features["image_embed"], before)


def test_crop_layers_need_the_pixels():
    engine, _ = engines("sam", exact=False)
    img = photo(48, 64)
    emb = engine.embed(img)
    with pytest.raises(OptionsError, match="crop_n_layers > 0 needs the image's pixels"):
        engine.propose(emb, {"crop_n_layers": 1})
    with pytest.raises(OptionsError, match="the image is 32x48 but the embedding"):
        engine.propose(emb, {"crop_n_layers": 1}, image=photo(48, 32))
    found = engine.propose(emb, {**LOOSE, "crop_n_layers": 1}, image=lambda: img)
    assert isinstance(engine, Proposer) and found.masks.shape[1:] == (48, 64)


def test_auto_routes_to_sam_amg_on_an_installed_sam_checkpoint(tmp_path, monkeypatch):
    from engines.hosts import tiny_sam
    monkeypatch.setattr("engines.hosts.sam.build_sam_architecture", lambda arch: tiny_sam(seed=3))
    ckpt = tmp_path / "sam_vit_b_01ec64.pth"
    torch.save(tiny_sam(seed=3).state_dict(), ckpt)
    router = Router(models_dir=tmp_path, checkpoints={"sam": ckpt})
    routed = router.route("auto")
    assert routed.name == "sam-amg" and isinstance(routed.engine, SamAmgEngine)
    assert routed.checkpoint == ckpt
    assert routed.engine.backbone_key == router.route("points", engine="sam").engine.backbone_key
    found = routed.engine.propose(routed.engine.embed(photo(48, 64)), LOOSE)
    assert len(found) > 0 and found.scores.dtype == np.float32
