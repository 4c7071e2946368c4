"""DIS-style evaluation of the "auto" proposers (PMG-SAM spec §5), through the engines.

Each image's target is the union of its instance masks at the original resolution. A
proposer with a probability map (pmg-sam: `Proposals.extras["probability"]`, no
post-processing, as the paper's DIS protocol) is scored on that grey map; a "segment
everything" proposer (sam2-amg, sam-amg) on one of its masks: the highest-scored one
("top-score", what the tool would show first) or the one with the highest IoU to the
target ("oracle top-1", the paper's baseline protocol, which sees the answer). An image
with no proposal scores an empty mask. Metrics, averaged over images: maxF (β² 0.3, of
the mean curve), weighted F, MAE, S-measure, mean E-measure and HCE (training/
sod_metrics.py, training/hce.py). The COS protocol (instances, Hungarian matching, COCO
AP) is not here yet.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .hce import hce
from .items import union_items
from .metrics import mask_iou
from .sod_metrics import e_measure, f_measure, mae, s_measure, weighted_f_measure

PICKS = {"map": "probability map", "top-score": "top-score", "oracle": "oracle top-1"}
METRICS = ("maxF", "wF", "MAE", "S", "meanE", "HCE")


def pick_prediction(proposals, gt: np.ndarray, pick: str) -> np.ndarray:
    """(H, W) float in [0, 1]: the probability map, or one proposal's mask."""
    if pick == "map":
        prob = proposals.extras.get("probability")
        if prob is None:
            raise ValueError(f"engine {proposals.engine} gives no probability map: use the "
                             "top-score or oracle pick")
        return np.asarray(prob, np.float64) / 255.0
    masks = proposals.masks
    if len(masks) == 0:
        return np.zeros(gt.shape, np.float64)
    if pick == "top-score":
        index = int(np.argmax(proposals.scores))
    elif pick == "oracle":
        index = int(np.argmax([mask_iou(m, gt) for m in masks]))
    else:
        raise ValueError(f"unknown pick {pick!r}; choose from {', '.join(PICKS)}")
    return masks[index].astype(np.float64)


def evaluate_auto(engines: dict[str, tuple[Any, tuple[str, ...]]], items,
                  options: dict[str, dict] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, dict[str, float]]:
    """{row: {metric: value, "n": images}} with one row per (engine, pick): `engines`
    maps a name to (proposer, picks). `items`: TrainItems (one per instance or image)."""
    targets = union_items(items)
    rows = {_row(name, pick): _Acc() for name, (_, picks) in engines.items() for pick in picks}
    for done, item in enumerate(targets, start=1):
        image, gt = item.load_image(), np.asarray(item.load_mask(), bool)
        for name, (engine, picks) in engines.items():
            found = engine.propose(engine.embed(image), (options or {}).get(name))
            for pick in picks:
                rows[_row(name, pick)].add(pick_prediction(found, gt, pick), gt)
        if progress:
            progress(done, len(targets))
    return {row: acc.result() for row, acc in rows.items()}


def _row(name: str, pick: str) -> str:
    return name if pick == "map" else f"{name} {PICKS[pick]}"


class _Acc:
    def __init__(self):
        self.curves, self.values = [], {k: [] for k in METRICS if k != "maxF"}

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        self.curves.append(f_measure(pred, gt)[1])
        self.values["wF"].append(weighted_f_measure(pred, gt))
        self.values["MAE"].append(mae(pred, gt))
        self.values["S"].append(s_measure(pred, gt))
        self.values["meanE"].append(float(e_measure(pred, gt)[1].mean()))
        self.values["HCE"].append(float(hce(pred, gt)))

    def result(self) -> dict[str, float]:
        out = {"maxF": float(np.mean(self.curves, 0).max()) if self.curves else float("nan")}
        out.update({k: float(np.mean(v)) if v else float("nan") for k, v in self.values.items()})
        return {**out, "n": len(self.curves)}


def format_auto_table(results: dict[str, dict[str, float]]) -> str:
    """Markdown: one row per engine and pick (↑ better, except MAE and HCE)."""
    head = "| engine | maxF ↑ | wF ↑ | MAE ↓ | S ↑ | mean E ↑ | HCE ↓ | images |"
    rows = [f"| {name} | " + " | ".join(f"{r[k]:.3f}" if k != "HCE" else f"{r[k]:.1f}" for k in METRICS)
            + f" | {r['n']} |" for name, r in results.items()]
    return "\n".join([head, "|---|" + "---|" * (len(METRICS) + 1), *rows])
