"""Our SAM / SAM 2 engines against Meta's reference predictors on the same random weights:
masks identical, scores and logits within 1e-5, for several image shapes and prompts."""
import copy

import numpy as np
import pytest
import torch

from engines.hosts.sam2 import Sam2Engine
from engines.hosts.sam import SamEngine
from engines.types import Prompt

SHAPES = [(96, 128), (200, 70), (333, 517), (256, 256)]


def prompts_for(h, w):
    pts = np.array([[w * 0.3, h * 0.4], [w * 0.6, h * 0.55], [w * 0.2, h * 0.8]])
    lab = np.array([1, 0, 1])
    box = np.array([w * 0.1, h * 0.2, w * 0.8, h * 0.9])
    return {
        "one point": dict(point_coords=pts[:1], point_labels=lab[:1]),
        "points": dict(point_coords=pts, point_labels=lab),
        "box": dict(box=box),
        "box+points": dict(point_coords=pts[:2], point_labels=lab[:2], box=box),
    }


def as_prompt(kw, **extra):
    return Prompt(points=kw.get("point_coords"), labels=kw.get("point_labels"), box=kw.get("box"), **extra)


def assert_same(pred, ref_masks, ref_scores, ref_logits):
    order = pred.extras["order"]
    assert pred.masks.dtype == bool
    assert np.array_equal(pred.masks, ref_masks[order].astype(bool))
    np.testing.assert_allclose(pred.scores, ref_scores[order], atol=1e-5, rtol=0)
    np.testing.assert_allclose(pred.low_res_logits, ref_logits[order], atol=1e-5, rtol=0)
    assert (np.diff(pred.scores) <= 0).all(), "candidates must come best first"


# The reference gets its own copy of the weights, made before our engine installs its
# decoder memoisation, so the comparison also proves that memoisation exact.
@pytest.fixture(scope="module")
def sam_pair(tiny_sam_model):
    from segment_anything import SamPredictor
    ref = SamPredictor(copy.deepcopy(tiny_sam_model))
    return SamEngine(copy.deepcopy(tiny_sam_model), backbone_key="tiny", device="cpu", exact=True), ref


@pytest.fixture(scope="module")
def sam2_pair(tiny_sam2_model):
    from sam2.sam2_image_predictor import SAM2ImagePredictor
    ref = SAM2ImagePredictor(copy.deepcopy(tiny_sam2_model))
    s = tiny_sam2_model.image_size // 4
    ref._bb_feat_sizes = [(s, s), (s // 2, s // 2), (s // 4, s // 4)]   # hard-coded for 1024 px
    engine = Sam2Engine(copy.deepcopy(tiny_sam2_model), backbone_key="tiny2", device="cpu", exact=True)
    return engine, ref


def _run_equivalence(engine, ref, set_features, shape, kind):
    h, w = shape
    img = np.random.default_rng(h * 1000 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    ref.set_image(img)
    emb = engine.embed(img)
    assert emb.image_size == (h, w)
    for name, feat in set_features(ref).items():
        assert torch.equal(feat, emb.features[name]), name
    kw = prompts_for(h, w)[kind]
    for multimask in (True, False):
        rm, rs, rl = ref.predict(multimask_output=multimask, **kw)
        pred = engine.predict(emb, as_prompt(kw, multimask=multimask))
        assert_same(pred, rm, rs, rl)
        # feed the best answer's logits back, as the tool does on the next click
        best = pred.low_res_logits[:1]
        rm2, rs2, rl2 = ref.predict(mask_input=best, multimask_output=False, **kw)
        pred2 = engine.predict(emb, as_prompt(kw, mask_logits=best, multimask=False))
        assert_same(pred2, rm2, rs2, rl2)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["one point", "points", "box", "box+points"])
def test_sam_engine_equals_sam_predictor(sam_pair, shape, kind):
    engine, ref = sam_pair
    _run_equivalence(engine, ref, lambda r: {"image_embed": r.features}, shape, kind)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["one point", "points", "box", "box+points"])
def test_sam2_engine_equals_sam2_image_predictor(sam2_pair, shape, kind):
    engine, ref = sam2_pair
    feats = lambda r: {"image_embed": r._features["image_embed"], "high_res_0": r._features["high_res_feats"][0],
                       "high_res_1": r._features["high_res_feats"][1]}
    _run_equivalence(engine, ref, feats, shape, kind)


def test_sam2_object_score_is_reported(sam2_pair):
    engine, _ = sam2_pair
    img = np.zeros((64, 64, 3), np.uint8)
    pred = engine.predict(engine.embed(img), Prompt(points=np.array([[10, 10]])))
    assert isinstance(pred.extras["object_score_logit"], float)
    assert pred.extras["object_present"] == (pred.extras["object_score_logit"] > 0)


def test_default_multimask_only_for_a_single_click(sam_pair):
    engine, _ = sam_pair
    emb = engine.embed(np.zeros((50, 60, 3), np.uint8))
    assert len(engine.predict(emb, Prompt(points=np.array([[5, 5]]))).masks) == 3
    assert len(engine.predict(emb, Prompt(points=np.array([[5, 5], [9, 9]]))).masks) == 1
    assert len(engine.predict(emb, Prompt(box=np.array([1, 1, 30, 30]))).masks) == 1
