"""The classic engine on the bundled photos (resources/samples): clicks on an object
select the object, never the sky or the ground around it, and with one or two clicks
never most of the image."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engines.classic.engine import NOT_SEPARATED, ClassicEngine
from engines.types import Prompt

SAMPLES = Path(__file__).resolve().parents[3] / "resources" / "samples"


def photo(name: str) -> np.ndarray:
    return np.asarray(Image.open(SAMPLES / name).convert("RGB"))


def clicks(points, labels=None) -> Prompt:
    pts = np.asarray(points, float)
    return Prompt(points=pts, labels=np.ones(len(pts), int) if labels is None
                  else np.asarray(labels))


@pytest.fixture(scope="module")
def engine():
    return ClassicEngine()


@pytest.mark.parametrize("n", [1, 2, 6])
def test_clicks_on_the_rocket_do_not_select_the_sky(engine, n):
    image = photo("rocket.jpg")                       # 640x427, a rocket against the sky
    emb = engine.embed(image)
    body = [(322, 250), (322, 300), (320, 200), (324, 330), (320, 170), (322, 360)][:n]
    mask = engine.predict(emb, clicks(body)).best
    assert mask.shape == image.shape[:2]
    assert mask.mean() < 0.1                           # the rocket, not the scene
    for x, y in ((100, 100), (500, 200), (320, 60), (600, 30)):    # sky all around
        assert not mask[y, x]
    assert sum(mask[y, x] for x, y in body) >= n / 2


@pytest.mark.parametrize("name", ["rocket.jpg", "coffee.png", "chelsea.png", "astronaut.png"])
def test_one_or_two_clicks_never_cover_most_of_a_photo(engine, name):
    image = photo(name)
    h, w = image.shape[:2]
    emb = engine.embed(image)
    rng = np.random.default_rng(0)
    for _ in range(4):
        k = int(rng.integers(1, 3))
        pts = rng.uniform((0.1 * w, 0.1 * h), (0.9 * w, 0.9 * h), (k, 2))
        pred = engine.predict(emb, clicks(pts))
        assert pred.best.mean() <= 0.5, (name, pts)
        if pred.extras.get("note"):
            assert pred.extras["note"] == NOT_SEPARATED


def test_a_background_click_is_respected(engine):
    image = photo("rocket.jpg")
    emb = engine.embed(image)
    mask = engine.predict(emb, clicks([(322, 250), (322, 140)], [1, 0])).best
    assert mask[250, 322] and not mask[140, 322]


def test_a_scene_the_engine_cannot_separate_is_said(engine):
    """A smooth grey ground and a smooth sky and a low-contrast object: whatever the mask,
    it stays small, or the answer says it could not separate the object."""
    h, w = 400, 600
    yy = np.mgrid[:h, :w][0]
    image = np.zeros((h, w, 3), np.float64)
    image[:] = (120, 120, 125)
    image[: h // 2] = np.stack([150 + 0.1 * yy[: h // 2]] * 3, -1)    # sky, a gradient
    image[240:280, 280:330] = (126, 124, 128)           # a small low-contrast object
    emb = engine.embed(image.clip(0, 255).astype(np.uint8))
    pred = engine.predict(emb, clicks([(300, 260), (310, 265)]))
    assert pred.best.mean() < 0.4 or pred.extras.get("note") == NOT_SEPARATED
    assert not pred.best[50, 50] or pred.extras.get("note") == NOT_SEPARATED
