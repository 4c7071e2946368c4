"""A generated instance-segmentation dataset for the training experiments.

`generate(out_dir, n_images, size, seed)` writes `out_dir/images/NNNNNN.png` and
`out_dir/instances.json` in the annotator's own COCO export format (RLE segmentations,
bbox, area, a "group" per image - every 4 consecutive images share one - and per
annotation a "prompts" log as annotator.ui.tools.PromptState.log stores it: a sloppy box
and/or one or two clicks, then the engine's answer). Load it with
`training.data.CocoInstances.load(json, out_dir / "images")`.

Each image: a textured background (smooth colour noise, stripes or a gradient), a few
small unlabelled distractors, then 2-5 objects in z-order - filled, textured shapes
(ellipses, polygons, blobs) and objects with thin parts (a body on 1-2 px legs, rings,
stick figures, cups with a thin handle, wires); at least one thin object per image.
Some distractors are drawn on top. Later shapes hide earlier ones: an instance's mask is
its *visible* pixels, so masks are disjoint. Image i depends only on (seed, i, size).

    python -m training.synthetic OUT --images N --size S --seed K
"""
from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from PIL import Image

from annotator.core import geometry
from training.prompts import noisy_box, positive_points

Rng = np.random.Generator
FILLED = ("ellipse", "polygon", "blob")
THIN = ("legged", "ring", "stick-figure", "cup", "wire")
CATEGORIES = FILLED + THIN
GROUP_SIZE = 4


# ---- textures ---------------------------------------------------------------------------

def _colour(rng: Rng, avoid: np.ndarray | None = None) -> np.ndarray:
    """A random colour, far (L1 > 150) from `avoid` when a few draws allow it."""
    c = rng.integers(0, 256, 3).astype(np.float32)
    for _ in range(12):
        if avoid is None or np.abs(c - avoid).sum() > 150:
            break
        c = rng.integers(0, 256, 3).astype(np.float32)
    return c


def _texture(rng: Rng, size: int, base: np.ndarray, period: tuple[float, float],
             noise: float) -> np.ndarray:
    """(size, size, 3) float: smooth colour noise, stripes or a gradient around `base`."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    kind = rng.integers(3)
    other = np.clip(base + rng.normal(0, 60, 3), 0, 255)
    if kind == 0:   # low-frequency colour noise
        cells = max(2, int(size / rng.uniform(*period)))
        field = rng.normal(0, 35, (cells, cells, 3)).astype(np.float32)
        tex = base + cv2.resize(field, (size, size), interpolation=cv2.INTER_CUBIC)
    else:
        theta = rng.uniform(0, np.pi)
        u = xx * np.cos(theta) + yy * np.sin(theta)
        if kind == 1:   # stripes
            t = 0.5 + 0.5 * np.sin(2 * np.pi * u / rng.uniform(*period))
        else:           # gradient
            t = (u - u.min()) / max(float(np.ptp(u)), 1.0)
        tex = base * (1 - t[..., None]) + other * t[..., None]
    return tex + rng.normal(0, noise, (size, size, 3)).astype(np.float32)


# ---- shapes (each returns a uint8 0/1 mask) --------------------------------------------

def _canvas(size: int) -> np.ndarray:
    return np.zeros((size, size), np.uint8)


def _pt(c: np.ndarray, r: float, angle: float) -> tuple[int, int]:
    return int(round(c[0] + r * np.cos(angle))), int(round(c[1] + r * np.sin(angle)))


def _ellipse(rng: Rng, size: int, c: np.ndarray, r: float) -> np.ndarray:
    m = _canvas(size)
    axes = (max(2, int(r)), max(2, int(r * rng.uniform(0.4, 1.0))))
    cv2.ellipse(m, _pt(c, 0, 0), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return m


def _polygon(rng: Rng, size: int, c: np.ndarray, r: float) -> np.ndarray:
    n = int(rng.integers(3, 9))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    pts = np.array([_pt(c, r * rng.uniform(0.45, 1.0), a) for a in angles], np.int32)
    m = _canvas(size)
    cv2.fillPoly(m, [pts], 1)
    return m


def _blob(rng: Rng, size: int, c: np.ndarray, r: float) -> np.ndarray:
    soft = np.zeros((size, size), np.float32)
    for _ in range(int(rng.integers(3, 7))):
        cv2.circle(soft, _pt(c, r * rng.uniform(0, 0.6), rng.uniform(0, 2 * np.pi)),
                   max(2, int(r * rng.uniform(0.3, 0.6))), 1.0, -1)
    soft = cv2.GaussianBlur(soft, (0, 0), max(1.0, r / 6))
    return (soft > 0.5).astype(np.uint8)


def _thin(rng: Rng) -> int:
    return int(rng.integers(1, 3))          # cv2 thickness 1 or 2: strokes 1 or ~3 px wide


def _legged(rng: Rng, size: int, c: np.ndarray, r: float) -> np.ndarray:
    m = _ellipse(rng, size, c, r * 0.5)
    for _ in range(int(rng.integers(2, 7))):
        a = rng.uniform(0, 2 * np.pi)
        tip = _pt(c, r * rng.uniform(0.9, 1.3), a + rng.normal(0, 0.2))
        cv2.line(m, _pt(c, r * 0.3, a), tip, 1, _thin(rng))
    return m


def _ring(rng: Rng, size: int, c: np.ndarray, r: float) -> np.ndarray:
    m = _canvas(size)
    axes = (max(3, int(r)), max(3, int(r * rng.uniform(0.5, 1.0))))
    cv2.ellipse(m, _pt(c, 0, 0), axes, float(rng.uniform(0, 180)), 0, 360, 1, _thin(rng))
    return m


def _stick_figure(rng: Rng, size: int, c: np.ndarray, r: float) -> np.ndarray:
    m, t = _canvas(size), _thin(rng)
    head, shoulder, hip = (c + (0, -0.6 * r), c + (0, -0.3 * r), c + (0, 0.2 * r))
    cv2.circle(m, _pt(head, 0, 0), max(2, int(r * 0.25)), 1, -1)
    cv2.line(m, _pt(head, 0, 0), _pt(hip, 0, 0), 1, t)
    down = np.pi / 2
    for side in (-1, 1):        # an arm and a leg on each side
        arm = down - side * rng.uniform(0.5, 1.4)
        leg = down - side * rng.uniform(0.2, 0.6)
        cv2.line(m, _pt(shoulder, 0, 0), _pt(shoulder, 0.6 * r, arm), 1, t)
        cv2.line(m, _pt(hip, 0, 0), _pt(hip, 0.8 * r, leg), 1, t)
    return m


def _cup(rng: Rng, size: int, c: np.ndarray, r: float) -> np.ndarray:
    m = _canvas(size)
    w, h = int(r * rng.uniform(0.5, 0.8)), int(r * rng.uniform(0.7, 1.0))
    x0, y0 = int(c[0] - w / 2), int(c[1] - h / 2)
    cv2.rectangle(m, (x0, y0), (x0 + w, y0 + h), 1, -1)
    side = 1 if rng.random() < 0.5 else -1
    centre = (x0 + w if side > 0 else x0, int(c[1]))
    start = -90 if side > 0 else 90
    axes = (max(2, int(r * 0.35)), max(2, int(h * 0.35)))
    cv2.ellipse(m, centre, axes, 0, start, start + 180, 1, _thin(rng))
    return m


def _wire(rng: Rng, size: int, c: np.ndarray, r: float) -> np.ndarray:
    m = _canvas(size)
    pts = np.array([_pt(c, r * rng.uniform(0.3, 1.2), rng.uniform(0, 2 * np.pi))
                    for _ in range(int(rng.integers(3, 6)))], np.int32)
    cv2.polylines(m, [pts], False, 1, _thin(rng))
    return m


SHAPES: dict[str, Callable[[Rng, int, np.ndarray, float], np.ndarray]] = {
    "ellipse": _ellipse, "polygon": _polygon, "blob": _blob, "legged": _legged,
    "ring": _ring, "stick-figure": _stick_figure, "cup": _cup, "wire": _wire}


# ---- one image ----------------------------------------------------------------------------

def render_image(rng: Rng, size: int, crowded: bool = False
                 ) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """(size x size x 3 uint8 RGB, [(category, visible bool mask)...]) of one scene.
    `crowded`: 4-7 objects packed around one spot in one colour family, so a loose box
    around one of them also covers its neighbours (Stable-SAM's cluttered scenes)."""
    bg_base = _colour(rng)
    canvas = _texture(rng, size, bg_base, (size / 4, size / 1.5), 6.0)
    n_obj = int(rng.integers(4, 8) if crowded else rng.integers(2, 6))
    kinds = [str(k) for k in rng.choice(CATEGORIES, n_obj)]
    if not any(k in THIN for k in kinds):
        kinds[int(rng.integers(n_obj))] = str(rng.choice(THIN))
    layers: list[tuple[str | None, np.ndarray]] = []   # (category or None for clutter, mask)
    n_clutter = int(rng.integers(2, 7))
    under = int(rng.integers(0, n_clutter + 1))
    if crowded:     # drawn only here, so the default scenes stay what they were
        spot, family = rng.uniform(0.35, 0.65, 2) * size, _colour(rng, bg_base)
    for i in range(n_clutter + n_obj):
        is_object = under <= i < under + n_obj
        c = rng.uniform(0.15, 0.85, 2) * size
        if is_object and crowded:
            c = np.clip(spot + rng.normal(0.0, 0.12 * size, 2), 0.1 * size, 0.9 * size)
        if is_object:
            kind = kinds[i - under]
            mask = SHAPES[kind](rng, size, c, size * rng.uniform(0.1, 0.22))
        else:
            kind = None
            mask = SHAPES[str(rng.choice(FILLED))](rng, size, c, size * rng.uniform(0.02, 0.05))
        base = family + rng.normal(0.0, 25.0, 3) if is_object and crowded else _colour(rng, bg_base)
        fill = _texture(rng, size, base, (3.0, 10.0), 10.0)
        canvas[mask > 0] = fill[mask > 0]
        layers.append((kind, mask > 0))
    return np.clip(canvas, 0, 255).astype(np.uint8), visible_objects(layers, size)


def visible_objects(layers: list[tuple[str | None, np.ndarray]], size: int
                    ) -> list[tuple[str, np.ndarray]]:
    """The labelled layers' visible pixels (bottom to top), tiny remnants dropped."""
    covered = np.zeros((size, size), bool)
    objects: list[tuple[str, np.ndarray]] = []
    min_area = max(6, size * size // 2000)
    for kind, mask in reversed(layers):     # top layer first: what is above hides what is below
        visible = mask & ~covered
        covered |= mask
        if kind is not None and visible.sum() >= min_area:
            objects.append((kind, visible))
    return objects[::-1]


def annotator_log(mask: np.ndarray, rng: Rng) -> list[dict[str, Any]]:
    """What a casual annotator leaves behind: a sloppy box (noise scale 0.2-0.4), one or
    two clicks, or both; then the answer entry (PromptState.log's format)."""
    mode = rng.choice(["box", "clicks", "box+click"], p=[0.4, 0.35, 0.25])
    log: list[dict[str, Any]] = []
    if mode != "clicks":
        box = noisy_box(mask, rng, float(rng.uniform(0.2, 0.4)))
        log.append({"type": "box", "box": [round(float(v), 2) for v in box]})
    if mode != "box":
        k = 1 if mode == "box+click" else int(rng.integers(1, 3))
        for x, y in positive_points(mask, rng, k, "distance"):
            log.append({"type": "point", "x": round(float(x), 2), "y": round(float(y), 2),
                        "label": 1})
    log.append({"type": "answer", "engine": "sam", "candidate": 0, "candidates": 3})
    return log


# ---- the dataset --------------------------------------------------------------------------

Render = Callable[[Rng, int], tuple[np.ndarray, list[tuple[str, np.ndarray]]]]


def generate(out_dir: str | Path, n_images: int, size: int = 256, seed: int = 0,
             render: Render = render_image, source: str = "training.synthetic") -> Path:
    """Write `n_images` scenes (`render`: one image and its objects) and their COCO
    file; returns the path of instances.json."""
    if n_images < 1 or size < 32:
        raise ValueError(f"need at least 1 image of at least 32 px, got {n_images} x {size}px")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    cat_ids = {name: i + 1 for i, name in enumerate(CATEGORIES)}
    images, annotations = [], []
    for i in range(n_images):
        rng = np.random.default_rng([seed, i, size])
        image, objects = render(rng, size)
        name = f"{i:06d}.png"
        Image.fromarray(image).save(out / "images" / name)
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size,
                       "group": f"g{i // GROUP_SIZE:04d}"})
        for kind, mask in objects:
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": cat_ids[kind],
                "segmentation": geometry.mask_to_rle(mask), "area": geometry.mask_area(mask),
                "bbox": [int(v) for v in geometry.mask_bbox(mask)], "iscrowd": 0,
                "score": None, "engine": "synthetic", "prompts": annotator_log(mask, rng)})
    doc = {
        "info": {"description": f"{source}: {n_images} images, {size}px, seed {seed}",
                 "version": "1.0"},
        "licenses": [], "images": images,
        "categories": [{"id": cat_ids[n], "name": n,
                        "supercategory": "thin" if n in THIN else "filled"} for n in CATEGORIES],
        "annotations": annotations}
    path = out / "instances.json"
    path.write_text(json.dumps(doc, separators=(",", ":")) + "\n", encoding="utf-8")
    return path


def generate_from_cli(argv: list[str] | None, prog: str, description: str, make,
                      variants: dict[str, tuple[str, Any]] | None = None):
    """Parse a generator's command line (out, --images, --size, --seed, and a --FLAG per
    `variants` entry FLAG: (help, make) that generates with that make instead) and run
    `make(out, images, size, seed)`: (args, path of instances.json, its COCO document)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("out", type=Path, help="output folder (images/ and instances.json)")
    parser.add_argument("--images", type=int, default=200, help="number of images (200)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (256)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    for flag, (help_text, _) in (variants or {}).items():
        parser.add_argument(f"--{flag}", action="store_true", help=help_text)
    args = parser.parse_args(argv)
    make = next((m for flag, (_, m) in (variants or {}).items() if getattr(args, flag)), make)
    try:
        path = make(args.out, args.images, args.size, args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    return args, path, json.loads(path.read_text(encoding="utf-8"))


def generate_crowded(out_dir: str | Path, n_images: int, size: int = 256, seed: int = 0) -> Path:
    """The same categories in crowded scenes (render_image's `crowded`)."""
    return generate(out_dir, n_images, size, seed, render=partial(render_image, crowded=True),
                    source="training.synthetic --crowded")


def main(argv: list[str] | None = None) -> int:
    crowded = ("4-7 objects packed around one spot in one colour family", generate_crowded)
    args, path, doc = generate_from_cli(argv, "python -m training.synthetic",
                                        "Generate the synthetic training dataset.", generate,
                                        variants={"crowded": crowded})
    thin = sum(1 for a in doc["annotations"] if CATEGORIES[a["category_id"] - 1] in THIN)
    print(f"wrote {len(doc['images'])} images ({args.size}x{args.size}) to "
          f"{args.out / 'images'} and {len(doc['annotations'])} instances ({thin} with thin "
          f"parts, {len(CATEGORIES)} categories) to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
