"""The camouflage dataset (training.synthetic_camo): deterministic by seed, loadable,
non-empty disjoint masks, and objects whose colour is close to their surroundings'
(unlike training.synthetic's, which are drawn far from the background colour)."""
from __future__ import annotations

import json

import cv2
import numpy as np

from training import synthetic, synthetic_camo
from training.data import CocoInstances


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_generation_is_deterministic_per_seed_and_loads(tmp_path):
    path = synthetic_camo.generate_camo(tmp_path / "a", 4, size=64, seed=0)
    again = synthetic_camo.generate_camo(tmp_path / "b", 4, size=64, seed=0)
    other = synthetic_camo.generate_camo(tmp_path / "c", 4, size=64, seed=1)
    assert files(path.parent) == files(again.parent)
    assert files(path.parent)["images/000000.png"] != files(other.parent)["images/000000.png"]
    data = CocoInstances.load(path, path.parent / "images")
    assert len(data.images) == 4 and len(data.instances) >= 4
    assert "synthetic_camo" in json.loads(path.read_text())["info"]["description"]


def ring_gap(image: np.ndarray, mask: np.ndarray) -> float:
    """L1 distance (0..765) of an object's mean colour from a 7 px ring around it."""
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool) & ~mask
    return float(np.abs(image[mask].mean(0) - image[ring].mean(0)).sum())


def test_objects_are_non_empty_disjoint_and_coloured_like_their_background():
    camo, plain = [], []
    for i in range(12):
        image, objects = synthetic_camo.render_camo_image(np.random.default_rng([0, i, 128]), 128)
        assert 1 <= len(objects) <= 3
        masks = [m for _, m in objects]
        assert all(m.sum() >= 8 for m in masks)
        assert (np.sum(masks, 0) <= 1).all()          # visible pixels: disjoint
        assert all(kind in synthetic.FILLED for kind, _ in objects)
        camo += [ring_gap(image, m) for m in masks]
        image, objects = synthetic.render_image(np.random.default_rng([0, i, 128]), 128)
        plain += [ring_gap(image, m) for _, m in objects]
    assert np.median(camo) < 60 < np.median(plain)
    # not invisible either: the seam and the small shift leave some difference
    assert np.median(camo) > 3


def test_perturbation_zero_gives_the_background_texture_itself():
    rng = np.random.default_rng(3)
    background = rng.uniform(0, 255, (32, 32, 3)).astype(np.float32)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:20, 8:20] = 1
    fill = synthetic_camo._camouflaged(np.random.default_rng(0), background, mask, 8.0, 0.0, 0.0)
    pixels = fill.reshape(-1, 3)                       # a rolled copy: the same values
    assert np.allclose(np.sort(pixels, 0), np.sort(background.reshape(-1, 3), 0), atol=1e-3)


def test_command_line(tmp_path, capsys):
    assert synthetic_camo.main([str(tmp_path / "o"), "--images", "2", "--size", "48"]) == 0
    assert "2 camouflage images" in capsys.readouterr().out
