"""Evaluation of the "auto" proposers (PMG-SAM spec §5, IP-SAM spec §5), through the engines.

Each image's target is the union of its instance masks at the original resolution. A
proposer with a probability map (pmg-sam, ip-sam: `Proposals.extras["probability"]`, no
post-processing, as the papers) is scored on that grey map; a "segment everything"
proposer (sam2-amg, sam-amg) on one of its masks: the highest-scored one ("top-score",
what the tool would show first, IP-SAM's SAM2-AMG row) or the one with the highest IoU to
the target ("oracle top-1", PMG-SAM's baseline protocol, which sees the answer); a
promptable SAM 2 under IP-SAM's baseline prompts (training/auto_protocols.py). An image
with no proposal scores an empty mask. Metrics, per image then averaged over images:
- "dis" (PMG-SAM): maxF (β² 0.3, the max of the mean F-curve), weighted F, MAE, S-measure,
  mean E-measure and HCE (training/sod_metrics.py, training/hce.py);
- "cod" (IP-SAM): MAE, weighted F, S-measure, mean E-measure, and mDice / mIoU of the
  prediction binarised at 0.5 (P > 0.5), per image then averaged.
`cos=True` also runs the COS protocol (training/cos_eval.py) on every proposer's instances
against the image's instances.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .auto_protocols import PROPOSAL_PROTOCOLS, baseline_prediction
from .cos_eval import CosEval
from .hce import hce
from .items import image_groups
from .metrics import binarised_dice_iou, mask_iou
from .sod_metrics import e_measure, f_measure, mae, s_measure, weighted_f_measure

PICKS = {"map": "probability map", "top-score": "top-score", "oracle": "oracle top-1"}
PROTOCOL_LABELS = {**PICKS, "null": "null prompt", "centroid-point": "1-pt GT centroid"}
METRIC_SETS = {"dis": ("maxF", "wF", "MAE", "S", "meanE", "HCE"),
               "cod": ("MAE", "wF", "S", "meanE", "mDice", "mIoU")}
METRICS = METRIC_SETS["dis"]
LOWER_IS_BETTER = ("MAE", "HCE")


def pick_prediction(proposals, gt: np.ndarray, pick: str) -> np.ndarray:
    """(H, W) float in [0, 1]: the probability map, or one proposal's mask."""
    if pick == "map":
        if proposals.extras.get("blank"):      # a one-colour image: nothing there, no map made
            return np.zeros(gt.shape, np.float64)
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


@dataclass
class AutoEvalResult:
    maps: dict[str, dict[str, float]]                   # row -> {metric: value, "n": images}
    cos: dict[str, dict] = field(default_factory=dict)  # proposer -> CosEval.result()
    cos_files: dict[str, tuple[dict, dict]] = field(default_factory=dict)  # -> CosEval.coco_files()


def run_auto_eval(engines: dict[str, tuple[Any, tuple[str, ...]]], items, *,
                  options: dict[str, dict] | None = None, metrics: str = "dis", cos: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> AutoEvalResult:
    """`engines` maps a name to (engine, protocols); one row per (engine, protocol).
    `items`: TrainItems (one per instance). Engines with the same backbone key share one
    embedding per image (sam2 and sam2-amg on one host); `options[name]` goes to `propose`."""
    if metrics not in METRIC_SETS:
        raise ValueError(f"unknown metric set {metrics!r}; choose from {', '.join(METRIC_SETS)}")
    groups = image_groups(items)
    rows = {_row(name, p): _Acc(metrics) for name, (_, protocols) in engines.items() for p in protocols}
    proposers = [name for name, (engine, protocols) in engines.items()
                 if any(p in PROPOSAL_PROTOCOLS for p in protocols)]
    cos_evals = {name: CosEval() for name in proposers} if cos else {}
    for done, group in enumerate(groups, start=1):
        image = group[0].load_image()
        instances = [np.asarray(item.load_mask(), bool) for item in group]
        gt = np.logical_or.reduce(instances)
        embeddings: dict[str, Any] = {}
        for name, (engine, protocols) in engines.items():
            key = getattr(engine, "backbone_key", name)
            emb = embeddings.get(key)
            if emb is None:
                emb = embeddings[key] = engine.embed(image)
            found = engine.propose(emb, (options or {}).get(name)) if name in proposers else None
            for protocol in protocols:
                if protocol in PROPOSAL_PROTOCOLS:
                    pred = pick_prediction(found, gt, protocol)
                else:
                    pred = baseline_prediction(engine, emb, gt, protocol)
                rows[_row(name, protocol)].add(pred, gt)
            if name in cos_evals:
                cos_evals[name].add(instances, found.masks, found.scores)
        if progress:
            progress(done, len(groups))
    return AutoEvalResult({row: acc.result() for row, acc in rows.items()},
                          {name: ev.result() for name, ev in cos_evals.items()},
                          {name: ev.coco_files() for name, ev in cos_evals.items()})


def evaluate_auto(engines: dict[str, tuple[Any, tuple[str, ...]]], items,
                  options: dict[str, dict] | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  metrics: str = "dis") -> dict[str, dict[str, float]]:
    """{row: {metric: value, "n": images}}: `run_auto_eval`'s map metrics only."""
    return run_auto_eval(engines, items, options=options, metrics=metrics, progress=progress).maps


def _row(name: str, protocol: str) -> str:
    return name if protocol == "map" else f"{name} {PROTOCOL_LABELS[protocol]}"


class _Acc:
    def __init__(self, metrics: str = "dis"):
        self.names = METRIC_SETS[metrics]
        self.curves: list[np.ndarray] = []
        self.values: dict[str, list[float]] = {k: [] for k in self.names if k != "maxF"}

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        v = self.values
        if "maxF" in self.names:
            self.curves.append(f_measure(pred, gt)[1])
        v["wF"].append(weighted_f_measure(pred, gt))
        v["MAE"].append(mae(pred, gt))
        v["S"].append(s_measure(pred, gt))
        v["meanE"].append(float(e_measure(pred, gt)[1].mean()))
        if "HCE" in v:
            v["HCE"].append(float(hce(pred, gt)))
        if "mDice" in v:
            d, iou = binarised_dice_iou(pred, gt)
            v["mDice"].append(d)
            v["mIoU"].append(iou)

    def result(self) -> dict[str, float]:
        out = {}
        if "maxF" in self.names:
            out["maxF"] = float(np.mean(self.curves, 0).max()) if self.curves else float("nan")
        out.update({k: float(np.mean(v)) if v else float("nan") for k, v in self.values.items()})
        return {**{k: out[k] for k in self.names}, "n": len(self.values["MAE"])}


def format_auto_table(results: dict[str, dict[str, float]], metrics: str = "dis") -> str:
    """Markdown: one row per engine and protocol (↑ better, except MAE and HCE)."""
    names = METRIC_SETS[metrics]
    head = "| engine | " + " | ".join(f"{_label(k)} {'↓' if k in LOWER_IS_BETTER else '↑'}"
                                      for k in names) + " | images |"
    rows = [f"| {name} | " + " | ".join(f"{r[k]:.1f}" if k == "HCE" else f"{r[k]:.3f}" for k in names)
            + f" | {r['n']} |" for name, r in results.items()]
    return "\n".join([head, "|---|" + "---|" * (len(names) + 1), *rows])


def _label(metric: str) -> str:
    return {"meanE": "mean E"}.get(metric, metric)
