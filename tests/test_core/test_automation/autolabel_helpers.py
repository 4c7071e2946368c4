"""Shared by the automation tests: a project of generated images and a real tiny SAM 2
"segment everything" proposer (random weights, loose thresholds so it proposes)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from annotator.core.automation.proposer import ImageProposer
from annotator.core.store import Project
from engines.files import EmbeddingCache
from engines.router import Routed

LOOSE = {"points_per_side": 4, "points_per_batch": 16, "pred_iou_thresh": 0.0,
         "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}


def scene(h: int, w: int, seed: int) -> np.ndarray:
    """Clutter with two flat-coloured objects, different per seed."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
    for _ in range(2):
        y, x = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
        img[y:y + h // 3, x:x + w // 3] = rng.integers(120, 255, 3)
    return img


def make_project(tmp: Path, n: int = 4, size=(48, 64), name: str = "p.annot") -> Path:
    """A project file with `n` generated PNGs (img0.png ...); returns its path."""
    root = tmp / "images"
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(scene(*size, seed=i)).save(root / f"img{i}.png")
    path = tmp / name
    with Project.create(path, root) as p:
        p.scan_folder()
    return path


def tiny_amg_engine(seed: int = 1):
    from engines.hosts import Sam2Engine, tiny_sam2
    from engines.sam_amg import AmgOptions, Sam2AmgEngine
    host = Sam2Engine(tiny_sam2(seed=seed), backbone_key="sam2:tiny:test", device="cpu")
    return Sam2AmgEngine(host, defaults=AmgOptions.for_host("sam2").updated(LOOSE))


def tiny_resolver(engine=None):
    engine = engine or tiny_amg_engine()

    def resolve(task, name):
        if name not in (None, engine.name):
            from engines.types import EngineError
            raise EngineError(f"no such engine {name!r}")
        return Routed(engine, engine.name, None)
    return resolve


def tiny_proposer(engine=None, **kw) -> ImageProposer:
    return ImageProposer(tiny_resolver(engine), EmbeddingCache(disk=False), **kw)


def candidate_set(project: Project) -> list[tuple]:
    """What a run produced, comparable across runs (ids and times left out)."""
    return sorted((project.image(c.image_id).file_name, c.rle["counts"], round(c.score, 6),
                   c.label, c.status) for c in project.candidates(status=None))
