"""Shared test data for the format tests: small real image files and a dataset whose
masks exercise every hard case (holes, an island inside a hole, several parts, a
1-pixel line, a single pixel, touching corners, a crowd region, image borders)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from annotator.core import geometry
from annotator.core.dataset import AnnotationRecord, CategoryRecord, Dataset, ImageRecord

SIZES = {"a.png": (64, 48), "sub/b.jpg": (50, 40), "sub/deeper/c.png": (33, 70)}


def write_images(root: Path) -> None:
    rng = np.random.default_rng(7)
    for name, (w, h) in SIZES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def hard_masks(h: int, w: int, seed: int) -> list[tuple[np.ndarray, bool]]:
    """(mask, iscrowd) pairs covering the hard cases, sized h x w."""
    rng = np.random.default_rng(seed)
    out = []
    ring = np.zeros((h, w), np.uint8)                      # hole with an island inside
    cv2.circle(ring, (w // 2, h // 2), min(h, w) // 3, 1, -1)
    cv2.circle(ring, (w // 2, h // 2), min(h, w) // 5, 0, -1)
    ring[h // 2, w // 2] = 1
    out.append((ring, False))
    parts = np.zeros((h, w), np.uint8)                     # two parts, one on the border
    parts[0:5, 0:7] = 1
    parts[h - 6:h, w - 4:w] = 1
    out.append((parts, False))
    line = np.zeros((h, w), np.uint8)                      # 1-pixel line + lone pixel
    line[3, 10:w - 3] = 1
    line[h - 2, 2] = 1
    out.append((line, False))
    diag = np.zeros((h, w), np.uint8)                      # pixels touching at corners
    for k in range(6):
        diag[10 + k, 5 + k] = 1
    diag[20:23, 20:23] = 1
    out.append((diag, False))
    blob = np.zeros((h, w), np.uint8)                      # a random ellipse
    cv2.ellipse(blob, (int(rng.integers(8, w - 8)), int(rng.integers(8, h - 8))),
                (int(rng.integers(3, 8)), int(rng.integers(3, 8))),
                float(rng.uniform(0, 180)), 0, 360, 1, -1)
    out.append((blob, False))
    crowd = (rng.random((h, w)) < 0.3).astype(np.uint8)    # a speckled crowd region
    crowd[:, : w // 2] = 0
    out.append((crowd, True))
    return [(m.astype(bool), c) for m, c in out]


def hard_dataset() -> tuple[Dataset, dict[int, np.ndarray]]:
    """A dataset over SIZES with non-sequential ids, plus each annotation's mask by id."""
    ds = Dataset(categories=[CategoryRecord(7, "zebra", "#112233", "animal"),
                             CategoryRecord(3, "apple", "", "fruit"),
                             CategoryRecord(12, "car")])
    masks: dict[int, np.ndarray] = {}
    ann_id = 100
    for k, (name, (w, h)) in enumerate(SIZES.items()):
        img = ImageRecord(id=10 + 5 * k, file_name=name, width=w, height=h,
                          group=f"g{k % 2}", reviewed=k == 0)
        ds.images.append(img)
        for order, (mask, crowd) in enumerate(hard_masks(h, w, seed=k)):
            cat = ds.categories[order % 3].id
            ds.annotations.append(AnnotationRecord(
                id=ann_id, image_id=img.id, category_id=cat, rle=geometry.mask_to_rle(mask),
                iscrowd=crowd, score=0.5 + 0.01 * order, engine="classic",
                prompts=[{"points": [[1, 2]], "labels": [1]}], order=order))
            masks[ann_id] = mask
            ann_id += 3
    return ds, masks


def non_overlapping_dataset() -> tuple[Dataset, dict[int, np.ndarray]]:
    """Like hard_dataset but no two masks of an image overlap (for PNG formats)."""
    ds, masks = hard_dataset()
    keep = []
    for img in ds.images:
        taken = np.zeros((img.height, img.width), bool)
        for ann in [a for a in ds.annotations if a.image_id == img.id]:
            m = masks[ann.id] & ~taken
            if not m.any():
                continue
            ann.rle = geometry.mask_to_rle(m)
            masks[ann.id] = m
            taken |= m
            keep.append(ann)
    ds.annotations = keep
    return ds, {a.id: masks[a.id] for a in keep}


def dump_project(path: Path) -> list[str]:
    """Everything in a project file, as SQL text (to compare before / after)."""
    import sqlite3
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        return [f"user_version {version}", *conn.iterdump()]
    finally:
        conn.close()


def mask_of(rle: dict) -> np.ndarray:
    return geometry.rle_to_mask(rle)
