"""PMG-SAM as a Proposer (spec §4): probability map -> instances at the original size,
the Pre-Mask in the extras, and the bad inputs that must not crash."""
import numpy as np
import pytest
import torch

from engines.pmg_sam import PmgOptions, PmgSamEngine, instances, tiny_pmg_sam
from engines.types import CancelledError, ImageError, OptionsError, Proposer


def _engine(bias: float | None = None, seed: int = 0) -> PmgSamEngine:
    model = tiny_pmg_sam(seed=seed)
    if bias is not None:     # a decoder whose every logit is `bias` (no / full foreground)
        mlp = model.head.decoder.output_hypernetworks_mlps[0].layers[-1]
        torch.nn.init.zeros_(mlp.weight)
        torch.nn.init.zeros_(mlp.bias)
        decoder = model.head.decoder
        for conv in (decoder.output_upscaling[3], decoder.conv_s0):   # upscaled = GELU(1) everywhere
            torch.nn.init.zeros_(conv.weight)
            torch.nn.init.zeros_(conv.bias)
        decoder.output_upscaling[3].bias.data.fill_(1.0)
        mlp.bias.data.fill_(bias / (mlp.bias.numel() * 0.8413))
    return PmgSamEngine(model, backbone_key="pmg-sam:test", device="cpu")


def _photo(h=48, w=60, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    image[h // 4: h // 2, w // 4: w // 2] = 220
    return image


def test_it_is_a_proposer_and_answers_at_the_original_size():
    engine = _engine()
    assert isinstance(engine, Proposer)
    emb = engine.embed(_photo())
    assert emb.features["logits"].shape == (1, 1, 16, 16) and emb.input_size == (51, 64)   # longest side -> 64
    found = engine.propose(emb)
    n = len(found)
    assert found.masks.shape == (n, 48, 60) and found.masks.dtype == bool
    assert found.scores.shape == (n,) and found.boxes.shape == (n, 4) and found.engine == "pmg-sam"
    assert np.all(np.diff(found.scores) <= 0)                      # best first
    assert found.extras["premask"].shape == (48, 60) and found.extras["premask"].dtype == np.uint8
    prob = found.extras["probability"].astype(np.float32) / 255
    for mask, score, box in zip(found.masks, found.scores, found.boxes):
        assert mask.any() and np.all(prob[mask] > 0.49)
        assert abs(prob[mask].mean() - score) < 3e-3                   # mean probability inside
        ys, xs = np.nonzero(mask)
        assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    # components never overlap: each pixel belongs to at most one instance
    assert found.masks.sum(0).max() <= 1


def test_instances_are_8_connected_components_with_mean_probability_scores():
    prob = np.zeros((20, 30), np.float32)
    prob[2:6, 2:6] = 0.9           # blob A
    prob[10:15, 20:28] = 0.7       # blob B
    prob[6, 6] = 0.8               # touches A diagonally only
    prob[18, 0] = 0.6              # one pixel
    masks, scores, boxes, areas, total = instances(prob, PmgOptions())
    assert total == 3 and len(scores) == 3 and masks.shape == (3, 20, 30) and masks[0].sum() == 17
    assert areas.tolist() == [17, 40, 1] and np.allclose(scores, [(16 * 0.9 + 0.8) / 17, 0.7, 0.6])
    assert boxes[0].tolist() == [2, 2, 7, 7]
    four = instances(prob, PmgOptions(connectivity=4))
    assert four[4] == 4                                    # the diagonal pixel is its own part
    big = instances(prob, PmgOptions(min_area=2))
    assert big[3].tolist() == [17, 40]
    assert len(instances(prob, PmgOptions(max_instances=1))[1]) == 1
    assert len(instances(prob, PmgOptions(threshold=0.95))[1]) == 0


def test_no_component_is_an_empty_answer_not_an_error():
    engine = _engine(bias=-20.0)
    found = engine.propose(engine.embed(_photo()))
    assert len(found) == 0 and found.masks.shape == (0, 48, 60) and found.boxes.shape == (0, 4)
    assert found.extras["components"] == 0 and found.extras["premask"].shape == (48, 60)
    everything = _engine(bias=20.0)
    one = everything.propose(everything.embed(_photo()))
    assert len(one) == 1 and one.masks[0].all()


@pytest.mark.parametrize("value", [0, 255, 37, (10, 200, 30)])
def test_a_blank_image_gives_empty_proposals(value):
    engine = _engine(bias=20.0)          # would call everything foreground
    image = np.empty((40, 50, 3), np.uint8)
    image[...] = value
    found = engine.propose(engine.embed(image))
    assert len(found) == 0 and found.masks.shape == (0, 40, 50) and found.extras == {"blank": True}


@pytest.mark.parametrize("h, w", [(20, 30), (7, 5), (1, 1), (3, 700), (900, 2), (1, 5000), (63, 64)])
def test_small_and_elongated_images_are_resized_and_padded(h, w):
    engine = _engine(bias=20.0)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    emb = engine.embed(image)
    found = engine.propose(emb)
    assert found.masks.shape[1:] == (h, w)
    if h * w == 1:                            # a single pixel is a blank image
        assert len(found) == 0 and found.extras == {"blank": True}
        return
    assert max(emb.input_size) == 64 and min(emb.input_size) >= 1
    assert len(found) == 1 and found.masks[0].all()      # the whole (unpadded) image


def test_options_are_checked_and_cancel_stops():
    engine = _engine()
    emb = engine.embed(_photo())
    for bad, message in [({"threshold": 1.5}, "threshold must be between 0 and 1"),
                         ({"connectivity": 6}, "connectivity must be 4 or 8"),
                         ({"min_area": -1}, "min_area must be"), ({"min_area": 2.5}, "whole number"),
                         ({"points_per_side": 32}, "unknown option"), ({"threshold": "x"}, "finite number")]:
        with pytest.raises(OptionsError, match=message):
            engine.propose(emb, bad)
    with pytest.raises(CancelledError):
        engine.propose(emb, cancel=lambda: True)
    with pytest.raises(ImageError):
        engine.embed(np.zeros((10, 10), np.uint8))
    assert len(engine.propose(emb, {"min_area": 10 ** 6})) == 0
