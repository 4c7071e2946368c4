"""The default (fast) mask upsampling stays within the issue's bound of the exact path:
at most 0.1 % of the mask's pixels differ, all on the mask's boundary; and the
decoder memoisation never changes an answer when the prompt's mask input changes."""
import copy

import numpy as np
import pytest

from engines.sam2_engine import Sam2Engine
from engines.sam_engine import SamEngine
from engines.types import Prompt


def boundary(mask):
    """Pixels whose 3x3 neighbourhood holds both classes."""
    p = np.pad(mask, 1, mode="edge")
    h, w = mask.shape
    shifts = [p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    stack = np.stack(shifts)
    return stack.any(0) & ~stack.all(0)


@pytest.fixture(scope="module", params=["sam", "sam2"])
def engines_pair(request, tiny_sam_model, tiny_sam2_model):
    cls, model = (SamEngine, tiny_sam_model) if request.param == "sam" else (Sam2Engine, tiny_sam2_model)
    fast = cls(copy.deepcopy(model), backbone_key="t", device="cpu")
    exact = cls(copy.deepcopy(model), backbone_key="t", device="cpu", exact=True)
    return fast, exact


@pytest.mark.parametrize("shape", [(333, 517), (480, 640), (1000, 300)])
def test_fast_masks_within_bound_of_exact(engines_pair, shape):
    fast, exact = engines_pair
    h, w = shape
    rng = np.random.default_rng(h + w)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    emb = fast.embed(img)
    differing = total = 0
    for _ in range(4):
        pt = rng.uniform([0, 0], [w, h], size=(1, 2))
        for prompt in (Prompt(points=pt), Prompt(box=np.array([w * .2, h * .2, w * .7, h * .8]), points=pt)):
            a, b = fast.predict(emb, prompt), exact.predict(emb, prompt)
            np.testing.assert_array_equal(a.scores, b.scores)
            np.testing.assert_array_equal(a.low_res_logits, b.low_res_logits)
            for ma, mb in zip(a.masks, b.masks):
                diff = ma != mb
                assert not (diff & ~boundary(mb)).any(), "a differing pixel lies off the mask's boundary"
                differing += int(diff.sum())
                total += max(int(mb.sum()), 1)
    assert differing <= 0.001 * total


def test_memoised_decoder_follows_mask_input(engines_pair):
    fast, exact = engines_pair
    img = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    emb = fast.embed(img)
    p1 = Prompt(points=np.array([[40.0, 50.0]]))
    first = fast.predict(emb, p1)
    fed = Prompt(points=np.array([[40.0, 50.0]]), mask_logits=first.low_res_logits[:1], multimask=False)
    again = Prompt(points=np.array([[40.0, 50.0]]), multimask=False)
    for prompt in (fed, again, fed):
        np.testing.assert_array_equal(fast.predict(emb, prompt).low_res_logits,
                                      exact.predict(emb, prompt).low_res_logits)
    # a second image: nothing from the first leaks
    emb2 = fast.embed(img[::-1].copy())
    np.testing.assert_array_equal(fast.predict(emb2, p1).low_res_logits, exact.predict(emb2, p1).low_res_logits)
