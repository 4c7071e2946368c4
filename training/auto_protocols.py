"""What an "auto" evaluation scores of one engine on one image, by protocol
(engines.manifest.EVAL_PROTOCOLS): the proposer's probability map or one of its proposals
(training.evaluate_auto.pick_prediction), or a promptable SAM 2 baseline of IP-SAM's
paper: a null prompt (no points, box or mask; single-mask output) or one positive click
at the truth's centroid (multimask output, the candidate of highest predicted IoU).
A baseline answers a bool mask, scored as a 0/1 map."""
from __future__ import annotations

import numpy as np

from engines.types import Prompt

PROPOSAL_PROTOCOLS = ("map", "top-score", "oracle")


def centroid_point(gt: np.ndarray) -> np.ndarray:
    """(x, y) pixel of the mask's centroid, or, when the centroid is not on the mask (a
    ring, a crescent, two parts), the mask pixel nearest it. ValueError for an empty mask."""
    ys, xs = np.nonzero(gt)
    if len(ys) == 0:
        raise ValueError("the truth is empty: there is no centroid to click")
    cy, cx = ys.mean(), xs.mean()
    y, x = int(round(cy)), int(round(cx))
    if not (0 <= y < gt.shape[0] and 0 <= x < gt.shape[1] and gt[y, x]):
        nearest = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
        y, x = int(ys[nearest]), int(xs[nearest])
    return np.array([x, y], np.float32)


def baseline_prediction(engine, emb, gt: np.ndarray, protocol: str) -> np.ndarray:
    """(H, W) float 0/1: a promptable engine's answer under `protocol`."""
    if protocol == "null":
        if not hasattr(engine, "predict_unprompted"):
            raise ValueError(f"engine {engine.name} has no null-prompt path (SAM 2 has)")
        return engine.predict_unprompted(emb, multimask=False).masks[0].astype(np.float64)
    if protocol == "centroid-point":
        if not gt.any():
            return np.zeros(gt.shape, np.float64)
        prompt = Prompt(points=centroid_point(gt)[None], labels=np.ones(1, np.int32), multimask=True)
        return engine.predict(emb, prompt).masks[0].astype(np.float64)   # best predicted IoU first
    raise ValueError(f"unknown protocol {protocol!r} for a promptable engine")
