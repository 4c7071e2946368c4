"""The classic (GrabCut / flood fill) engine on synthetic scenes made here: textured objects
on a contrasting textured background, two touching objects of one colour, odd image sizes."""
from __future__ import annotations


import cv2
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from engines.classic.engine import ClassicEngine
from engines.types import Embedding, Engine, EngineError, ImageError, Prompt, PromptError

OBJECT, BACKGROUND = (200, 90, 60), (70, 140, 70)


def textured(h: int, w: int, colour, rng, noise: float = 18.0) -> np.ndarray:
    """Colour + pixel noise + low-frequency blotches (float; clip before use)."""
    blotch = rng.normal(0, noise, (max(1, h // 16), max(1, w // 16), 3)).astype(np.float32)
    blotch = cv2.resize(blotch, (w, h), interpolation=cv2.INTER_CUBIC)
    return rng.normal(0, noise, (h, w, 3)) + blotch + np.asarray(colour, float)


def compose(h: int, w: int, objects, seed: int = 0) -> np.ndarray:
    """Background texture with each (mask, colour) pasted in its own texture."""
    rng = np.random.default_rng(seed)
    image = textured(h, w, BACKGROUND, rng)
    for mask, colour in objects:
        image[mask] = textured(h, w, colour, rng)[mask]
    return image.clip(0, 255).astype(np.uint8)


def disc(h, w, cx, cy, r) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2


def rect(h, w, x0, y0, x1, y1) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def click(*xy_labels) -> Prompt:
    pts = np.array([xy for xy, _ in xy_labels], float)
    return Prompt(points=pts, labels=np.array([lab for _, lab in xy_labels]))


@pytest.fixture(scope="module")
def engine() -> ClassicEngine:
    return ClassicEngine()


@pytest.fixture(scope="module")
def two_objects(engine):
    """A textured disc and a rectangle of another colour, well apart (H=480, W=640)."""
    h, w = 480, 640
    d, r = disc(h, w, 200, 240, 110), rect(h, w, 400, 120, 580, 380)
    image = compose(h, w, [(d, OBJECT), (r, (60, 70, 190))])
    return image, engine.embed(image), d, r


@pytest.fixture(scope="module")
def snowman(engine):
    """Two touching discs of ONE colour: only a negative click can tell them apart."""
    h, w = 400, 560
    a = disc(h, w, 210, 200, 100)
    b = disc(h, w, 365, 200, 70) & ~a
    image = compose(h, w, [(a | b, (210, 200, 80))], seed=1)
    return engine.embed(image), a, b


# -- quality ----------------------------------------------------------------------------------

def test_box_around_each_object_matches_it(engine, two_objects):
    _, emb, d, r = two_objects
    for truth, box in ((d, [85, 125, 315, 355]), (r, [390, 110, 590, 390]),
                       (d, [70, 100, 340, 370])):                  # the last one is sloppy
        pred = engine.predict(emb, Prompt(box=np.array(box, float)))
        assert pred.masks.shape == (1, 480, 640) and pred.masks.dtype == bool
        assert iou(pred.best, truth) > 0.85, box


def test_one_positive_click_inside_finds_the_object(engine, two_objects):
    _, emb, d, r = two_objects
    for truth, xy in ((d, (200, 240)), (d, (150, 300)), (r, (490, 250))):
        pred = engine.predict(emb, click((xy, 1)))
        assert iou(pred.best, truth) > 0.7, xy


def test_negative_click_cuts_off_a_touching_object_of_the_same_colour(engine, snowman):
    emb, a, b = snowman
    alone = engine.predict(emb, click(((210, 200), 1))).best
    assert (alone & b).sum() > 0.5 * b.sum()            # without "no", both are taken
    cut = engine.predict(emb, click(((210, 200), 1), ((380, 200), 0))).best
    assert iou(cut, a) > 0.85
    assert (cut & b).sum() < 0.05 * b.sum()


def test_negative_click_inside_a_box_drops_that_object(engine, snowman):
    emb, a, b = snowman
    box = np.array([95, 85, 450, 315], float)
    both = engine.predict(emb, Prompt(box=box)).best
    assert iou(both, a | b) > 0.85
    cut = engine.predict(emb, Prompt(box=box, points=np.array([[380.0, 200.0]]),
                                     labels=np.array([0]))).best
    assert iou(cut, a) > 0.85 and (cut & b).sum() < 0.05 * b.sum()


def test_negative_click_on_a_separate_object_in_a_box_drops_it(engine, two_objects):
    _, emb, d, r = two_objects
    box = np.array([80, 100, 600, 400], float)
    pred = engine.predict(emb, Prompt(box=box, points=np.array([[200.0, 240.0], [490.0, 250.0]]),
                                      labels=np.array([1, 0])))
    assert iou(pred.best, d) > 0.85 and (pred.best & r).sum() < 0.02 * r.sum()


def test_scores_are_confidences_in_0_1_and_rank_a_clear_object_first(engine, two_objects):
    _, emb, d, _ = two_objects
    good = engine.predict(emb, Prompt(box=np.array([85, 125, 315, 355], float)))
    noise = engine.predict(emb, Prompt(box=np.array([330, 400, 390, 470], float)))  # background only
    assert good.scores.shape == (1,) and 0.0 <= noise.scores[0] <= good.scores[0] <= 1.0
    assert good.scores[0] > 0.8 and good.scores[0] - noise.scores[0] > 0.2


# -- feeding an answer back -------------------------------------------------------------------

def test_low_res_logits_are_sam_frame_and_feed_back(engine, two_objects):
    _, emb, d, r = two_objects
    first = engine.predict(emb, Prompt(box=np.array([85, 125, 315, 355], float)))
    logits = first.low_res_logits
    assert logits.shape == (1, 256, 256) and logits.dtype == np.float32
    # SAM's frame: the 640x480 image fills 256x192 at the top left, the padding is "no".
    assert (logits[0, 192:] < 0).all()
    content = cv2.resize(logits[0, :192], (640, 480), interpolation=cv2.INTER_LINEAR) > 0
    assert iou(content, first.best) > 0.9
    again = engine.predict(emb, Prompt(mask_logits=logits))
    assert iou(again.best, first.best) > 0.9
    # The previous mask plus a click on the other object: both are kept.
    more = engine.predict(emb, Prompt(mask_logits=logits, points=np.array([[490.0, 250.0]])))
    assert iou(more.best, d | r) > 0.8


def test_previous_mask_plus_negative_click_removes_a_part(engine, snowman):
    emb, a, b = snowman
    both = engine.predict(emb, Prompt(box=np.array([95, 85, 450, 315], float)))
    cut = engine.predict(emb, Prompt(mask_logits=both.low_res_logits,
                                     points=np.array([[380.0, 200.0], [210.0, 200.0]]),
                                     labels=np.array([0, 1])))
    assert iou(cut.best, a) > 0.85


# -- sizes, determinism, degenerate input -----------------------------------------------------

@pytest.mark.parametrize("h, w", [(333, 517), (2000, 300), (300, 2000), (5, 7)])
def test_mask_has_the_original_size_and_place(engine, h, w):
    truth = rect(h, w, w // 4, h // 4, w // 2 + w // 8, h // 2 + h // 8)
    image = compose(h, w, [(truth, OBJECT)], seed=3)
    emb = engine.embed(image)
    assert emb.image_size == (h, w) and max(emb.input_size) <= engine.max_side
    pred = engine.predict(emb, Prompt(box=np.array([w / 5, h / 5, 0.7 * w, 0.7 * h])))
    assert pred.masks.shape == (1, h, w) and pred.low_res_logits.shape == (1, 256, 256)
    if min(h, w) >= 100:                       # big enough to judge the answer, not only its shape
        assert iou(pred.best, truth) > 0.85


def test_same_prompt_same_answer(engine, two_objects):
    image, emb, _, _ = two_objects
    prompt = click(((200, 240), 1), ((450, 200), 0))
    first, second = engine.predict(emb, prompt), engine.predict(emb, prompt)
    other = ClassicEngine().predict(ClassicEngine().embed(image), prompt)
    for pred in (second, other):
        assert np.array_equal(first.masks, pred.masks)
        assert np.array_equal(first.scores, pred.scores)
        assert np.array_equal(first.low_res_logits, pred.low_res_logits)


def test_flat_image_and_negative_only_prompts_do_not_crash(engine):
    flat = engine.embed(np.full((60, 80, 3), 128, np.uint8))
    for prompt in (click(((40, 30), 1)), Prompt(box=np.array([10, 10, 50, 40], float)),
                   Prompt(box=np.array([0, 0, 80, 60], float))):
        pred = engine.predict(flat, prompt)
        assert pred.masks.shape == (1, 60, 80) and np.isfinite(pred.scores).all()
    empty = engine.predict(flat, click(((40, 30), 0)))
    assert not empty.best.any() and empty.scores[0] == 0.0
    assert (empty.low_res_logits < 0).all()
    none = engine.predict(flat, Prompt(mask_logits=np.full((1, 256, 256), -10, np.float32)))
    assert not none.best.any()


def test_embed_keeps_a_small_private_copy(engine):
    image = compose(768, 1024, [(disc(768, 1024, 500, 400, 150), OBJECT)])
    emb = engine.embed(image)
    assert emb.features == {} and emb.backbone_key == "classic:v1"
    assert emb.image_size == (768, 1024) and emb.image.shape == (480, 640, 3)
    assert emb.input_size == (480, 640)
    before = emb.image.copy()
    image[:] = 0                                      # the caller reuses its buffer
    assert np.array_equal(emb.image, before)
    small = engine.embed(np.zeros((100, 50, 3), np.uint8))
    assert small.image.shape == (100, 50, 3)          # never upscaled


# -- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt, words", [
    (Prompt(), "empty"),
    (click(((700, 100), 1)), "outside"),
    (click(((-1, 10), 1)), "outside"),
    (Prompt(box=np.array([700, 500, 900, 600], float)), "no area"),
    (Prompt(text="cat"), "text"),
    (Prompt(mask_logits=np.zeros((1, 64, 128), np.float32)), "square"),
])
def test_bad_prompts_raise_prompt_error(engine, two_objects, prompt, words):
    _, emb, _, _ = two_objects
    with pytest.raises(PromptError, match=words):
        engine.predict(emb, prompt)


@pytest.mark.parametrize("image", [
    np.zeros((40, 40, 3), np.float32),
    np.zeros((40, 40), np.uint8),
    np.zeros((40, 40, 4), np.uint8),
    [[0, 0, 0]],
])
def test_bad_images_raise_image_error(engine, image):
    with pytest.raises(ImageError):
        engine.embed(image)


def test_foreign_embedding_and_bad_options_are_refused(engine):
    foreign = Embedding(backbone_key="sam:vit_b:x", image_size=(10, 10), input_size=(10, 10),
                        features={})
    with pytest.raises(EngineError, match="own embed"):
        engine.predict(foreign, click(((5, 5), 1)))
    for options in ({"max_side": 0}, {"iterations": 0}, {"max_side": "640"},
                    {"grabcut_pixels": 10}, {"max_flood_tolerance": 0.5}):
        with pytest.raises(EngineError):
            ClassicEngine(**options)


# -- registration -----------------------------------------------------------------------------

def test_registered_without_checkpoint_and_built_with_router_options():
    from engines.registry import get_spec
    spec = get_spec("classic")
    assert spec.factory is ClassicEngine and not spec.needs_checkpoint
    assert spec.tasks == frozenset({"points", "box"})
    engine = spec.factory(device="cpu", checkpoint=None, max_side=320)
    assert isinstance(engine, Engine) and engine.name == "classic" and engine.max_side == 320


def test_found_through_get_spec_without_importing_the_other_engines():
    import subprocess
    import sys
    code = ("import sys; from engines.registry import get_spec; get_spec('classic'); "
            "print(sorted(m for m in sys.modules if m.startswith(('engines.hosts', 'engines.hq_sam'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- any valid prompt on any image gets a well-formed answer ----------------------------------


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 90), w=st.integers(1, 90), seed=st.integers(0, 3),
       # [0, 1): a box starting at the image's far edge has no area inside it (refused)
       fx=st.lists(st.floats(0, 1, exclude_max=True), min_size=4, max_size=4),
       labels=st.lists(st.integers(0, 1), min_size=0, max_size=3), use_box=st.booleans())
def test_any_valid_prompt_gets_a_well_formed_answer(h, w, seed, fx, labels, use_box):
    image = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    engine = ClassicEngine(max_side=64)
    emb = engine.embed(image)
    x0, x1 = sorted((fx[0] * w, fx[2] * w))
    y0, y1 = sorted((fx[1] * h, fx[3] * h))
    box = np.array([x0, y0, x1 + 1, y1 + 1]) if use_box else None
    points = np.array([[fx[i] * w, fx[i + 1] * h] for i in range(len(labels))]).reshape(-1, 2)
    prompt = Prompt(points=points if len(labels) else None,
                    labels=np.array(labels) if labels else None, box=box)
    if prompt.is_empty:
        with pytest.raises(PromptError):
            engine.predict(emb, prompt)
        return
    pred = engine.predict(emb, prompt)
    assert pred.masks.shape == (1, h, w) and pred.masks.dtype == bool
    assert pred.low_res_logits.shape == (1, 256, 256) and pred.low_res_logits.dtype == np.float32
    assert pred.scores.shape == (1,) and 0.0 <= pred.scores[0] <= 1.0
    assert pred.engine == "classic"
    fed = engine.predict(emb, Prompt(mask_logits=pred.low_res_logits))
    assert fed.masks.shape == (1, h, w)
