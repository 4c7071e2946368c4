"""Tiny random-weight files and a synthetic scene for SAM-MI's training and eval tests:
a tiny SAM (128 px) and a tiny open_clip CLIP saved as files, and one 96 x 128 image
with a red square ("square") and a blue disc ("disc") as category-labelled items."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from engines.hosts import tiny_sam
from engines.sam_mi import tiny_clip
from training.items import TrainItem

LENIENT = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def write_models(root: Path) -> tuple[Path, Path]:
    """(SAM file, CLIP file) in `root`."""
    root.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_sam(img_size=128).state_dict(), root / "sam_tiny.pth")
    torch.save(tiny_clip().state_dict(), root / "clip_tiny.pt")
    return root / "sam_tiny.pth", root / "clip_tiny.pt"


def scene(shift: int = 0) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
    img = np.full((96, 128, 3), 30, np.uint8)
    square = np.zeros((96, 128), bool)
    square[10 + shift:50 + shift, 10:60] = True
    yy, xx = np.mgrid[:96, :128]
    disc = (yy - 60) ** 2 + (xx - 95 + shift) ** 2 < 400
    img[square] = (220, 30, 30)
    img[disc] = (30, 30, 220)
    return img, [(square, "square"), (disc, "disc")]


def scene_items(shift: int = 0, key: str | None = None) -> list[TrainItem]:
    img, objects = scene(shift)
    key = key or f"scene-{shift}"
    return [TrainItem(img.shape[:2], lambda: img, lambda m=m: m, None, f"scene {shift} annotation {i}",
                      source=key, _key=key, category=c) for i, (m, c) in enumerate(objects)]


def write_coco(root: Path, shifts=(0, 6)) -> tuple[Path, Path]:
    """A COCO instances file (polygon-free: RLE masks) and its images folder."""
    import cv2
    from pycocotools import mask as mask_utils
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    cats = {"square": 1, "disc": 2}
    for i, shift in enumerate(shifts):
        img, objects = scene(shift)
        name = f"scene{i}.png"
        cv2.imwrite(str(images_dir / name), img[..., ::-1])
        images.append({"id": i + 1, "file_name": name, "height": 96, "width": 128})
        for mask, cat in objects:
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cats[cat],
                         "segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                         "area": float(mask.sum()), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                         "iscrowd": 0})
    data = root / "instances.json"
    data.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": v, "name": k} for k, v in cats.items()]}))
    return data, images_dir


def sam_mi_dataset(tmp_path_factory, name: str):
    """(root, SAM file, CLIP file, COCO file, images folder) of a tiny sam-mi set-up."""
    root = tmp_path_factory.mktemp(name)
    sam, clip = write_models(root / "models")
    data, images = write_coco(root)
    return root, sam, clip, data, images
