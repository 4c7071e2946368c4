"""Shared by the review-queue GUI tests: a folder of generated cluttered scenes and a
session factory whose "auto" task is the tiny random-weight SAM 2 AMG proposer of the
automation tests (its host answers clicks); text is "not installed"."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from autolabel_helpers import scene, tiny_amg_engine

SIZE = (96, 128)


def scene_folder(root: Path, n: int = 3) -> Path:
    folder = root / "scenes"
    folder.mkdir()
    for i in range(n):
        Image.fromarray(scene(*SIZE, seed=i)).save(folder / f"img{i}.png")
    return folder


class NamesEverything:
    """A stand-in text engine (none is installed in this build): the AMG's objects, each
    named with the first typed class."""
    name = "fake-text"

    def __init__(self, amg):
        self._amg = amg

    def __getattr__(self, attr):              # embedding, backbone key: the AMG's
        return getattr(self._amg, attr)

    def propose(self, emb, options, cancel=None, image=None):
        import dataclasses
        options = dict(options)
        classes = options.pop("classes")
        found = self._amg.propose(emb, options, cancel=cancel, image=image)
        return dataclasses.replace(found, engine=self.name,
                                   class_names=[classes[0]] * len(found))


def amg_factory(engine=None, text: bool = False):
    from annotator.core.session import EngineSession
    from engines.files.cache import EmbeddingCache
    from engines.router import NOT_INSTALLED_HINT, Routed
    from engines.types import EngineError

    amg = engine or tiny_amg_engine()

    def resolve(task, fine_edges):
        if task == "auto":
            return Routed(amg, amg.name, None)
        if task == "text" and text:
            return Routed(NamesEverything(amg), NamesEverything.name, None)
        if task in NOT_INSTALLED_HINT:
            raise EngineError(NOT_INSTALLED_HINT[task])
        return Routed(amg.host, "sam2", None)

    def factory(on_event):
        return EngineSession(resolve, EmbeddingCache(memory_mb=64, disk=False), on_event,
                             device="cpu")
    return factory


def point_selecting(w, cand_id: int) -> tuple[float, float]:
    """An image point whose click selects `cand_id` (the smallest shown candidate under
    it), as deep inside it as possible so no outline is near."""
    import cv2
    layer = w.canvas.candidates
    entry = next(e for e in layer.entries if e.id == cand_id)
    s = entry.shape
    padded = np.pad(s.crop.mask, 1).astype(np.uint8)
    depth = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]
    for flat in np.argsort(-depth, axis=None):
        y, x = np.unravel_index(flat, depth.shape)
        px, py = s.x0 + x + 0.5, s.y0 + y + 0.5
        if layer.hit(px, py) == cand_id:
            return float(px), float(py)
    raise AssertionError(f"no pixel of candidate {cand_id} selects it")
