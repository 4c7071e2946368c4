"""A generated camouflage dataset: objects cut from their own background.

Each image is one textured background (training.synthetic's textures, finer and noisier)
with 1-3 filled objects (ellipses, polygons, blobs) whose pixels are the *same*
background taken from a nearby offset (so texture and colour statistics match the
surroundings), then perturbed a little: a per-channel gain of 1 +- `gain` and a colour
shift of N(0, `shift`). What betrays an object is the seam where the shifted texture
meets the unshifted one and the small colour change, which is hard but learnable.
A few camouflaged unlabelled patches of the same kind are added as clutter. Same COCO
output as training.synthetic (visible masks, groups of four, stored casual prompts);
image i depends only on (seed, i, size).

    python -m training.synthetic_camo OUT --images N --size S --seed K
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from training.synthetic import (FILLED, SHAPES, Rng, _colour, _texture, generate, generate_from_cli,
                                visible_objects)

GAIN = 0.08      # per-channel contrast change of an object, +-
SHIFT = 10.0     # per-channel colour shift of an object, std (of 0..255)


def _camouflaged(rng: Rng, background: np.ndarray, mask: np.ndarray, radius: float,
                 gain: float, shift: float) -> np.ndarray:
    """The background moved by about one object radius (its own local texture), with a
    small per-channel gain and colour shift, meant to be pasted under `mask`."""
    angle = rng.uniform(0, 2 * np.pi)
    dist = radius * rng.uniform(0.6, 1.2)
    dy, dx = int(round(dist * np.sin(angle))), int(round(dist * np.cos(angle)))
    moved = np.roll(background, (dy, dx), axis=(0, 1))
    g = 1.0 + rng.uniform(-gain, gain, 3).astype(np.float32)
    mean = background[mask > 0].mean(0) if mask.any() else background.mean((0, 1))
    return (moved - mean) * g + mean + rng.normal(0, shift, 3).astype(np.float32)


def render_camo_image(rng: Rng, size: int, gain: float = GAIN, shift: float = SHIFT
                      ) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """(size x size x 3 uint8 RGB, [(category, visible bool mask)...]) of one scene."""
    background = _texture(rng, size, _colour(rng), (size / 12, size / 4), 8.0)
    canvas = background.copy()
    n_obj, n_clutter = int(rng.integers(1, 4)), int(rng.integers(0, 3))
    layers: list[tuple[str | None, np.ndarray]] = []
    for i in range(n_clutter + n_obj):
        is_object = i >= n_clutter          # clutter first: objects are never hidden by it
        kind = str(rng.choice(FILLED))
        radius = size * (rng.uniform(0.1, 0.22) if is_object else rng.uniform(0.03, 0.06))
        mask = SHAPES[kind](rng, size, rng.uniform(0.2, 0.8, 2) * size, radius)
        fill = _camouflaged(rng, background, mask, radius, gain, shift)
        canvas[mask > 0] = fill[mask > 0]
        layers.append((kind if is_object else None, mask > 0))
    return np.clip(canvas, 0, 255).astype(np.uint8), visible_objects(layers, size)


def generate_camo(out_dir: str | Path, n_images: int, size: int = 256, seed: int = 0) -> Path:
    """Write `n_images` camouflage scenes and their COCO file (path of instances.json)."""
    return generate(out_dir, n_images, size, seed, render=render_camo_image,
                    source="training.synthetic_camo")


def main(argv: list[str] | None = None) -> int:
    args, path, doc = generate_from_cli(argv, "python -m training.synthetic_camo",
                                        "Generate the synthetic camouflage dataset.", generate_camo)
    print(f"wrote {len(doc['images'])} camouflage images ({args.size}x{args.size}) to "
          f"{args.out / 'images'} and {len(doc['annotations'])} instances to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
