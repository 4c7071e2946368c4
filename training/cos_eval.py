"""COS protocol (PMG-SAM spec §4.5, §5): a proposer's instances against each image's
ground-truth instances, as COCO mask AP.

Per image, the proposals (for pmg-sam the 8-connected components of its map above 0.5,
score = mean probability inside) are matched one-to-one to the truth's instances by the
Hungarian algorithm (scipy's linear_sum_assignment on 1 - mask IoU); a pair of IoU 0 is no
match [choice]. The predictions become a COCO results list (RLE from
pycocotools.mask.encode, category 1, score = the proposal's score), the truth a COCO
dataset (class-agnostic: every instance category 1), and pycocotools' COCOeval (iouType
"segm") gives AP (IoU .50:.05:.95), AP50 and AP75. Two ways: "matched", as the paper does
(only the matched predictions, so false positives never count and AP is inflated), and
"all", every proposal kept. No predictions at all scores 0 (COCOeval would say -1,
"undefined"; pycocotools' loadRes cannot even read an empty list).
"""
from __future__ import annotations

import contextlib
import io

import numpy as np

VARIANTS = {"matched": "matched only (paper)", "all": "all components"}
AP_KEYS = ("AP", "AP50", "AP75")


def encode(mask: np.ndarray) -> dict:
    """A bool (H, W) mask as COCO RLE with text counts (JSON-ready)."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def match_instances(pred_rles: list[dict], gt_rles: list[dict]) -> list[tuple[int, int, float]]:
    """Hungarian one-to-one matching: (prediction, truth, IoU) pairs of IoU > 0."""
    if not pred_rles or not gt_rles:
        return []
    from pycocotools import mask as mask_utils
    from scipy.optimize import linear_sum_assignment
    ious = np.asarray(mask_utils.iou(pred_rles, gt_rles, [0] * len(gt_rles)), np.float64)
    rows, cols = linear_sum_assignment(1.0 - ious)
    return [(int(r), int(c), float(ious[r, c])) for r, c in zip(rows, cols) if ious[r, c] > 0]


class CosEval:
    """Accumulates images (`add`), then scores them (`result`); `coco_files` gives the
    ground truth as a COCO dataset and each variant's COCO results list."""

    def __init__(self) -> None:
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.results: dict[str, list[dict]] = {v: [] for v in VARIANTS}

    def add(self, gt_masks: list[np.ndarray], pred_masks, scores) -> None:
        from pycocotools import mask as mask_utils
        image_id = len(self.images) + 1
        h, w = np.asarray(gt_masks[0]).shape if len(gt_masks) else np.asarray(pred_masks[0]).shape
        self.images.append({"id": image_id, "height": int(h), "width": int(w)})
        gt_rles = [encode(m) for m in gt_masks]
        for rle in gt_rles:
            self.annotations.append({
                "id": len(self.annotations) + 1, "image_id": image_id, "category_id": 1,
                "segmentation": rle, "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0})
        pred_rles = [encode(m) for m in pred_masks]
        matched = {p for p, _, _ in match_instances(pred_rles, gt_rles)}
        for index, (rle, score) in enumerate(zip(pred_rles, np.asarray(scores, np.float64))):
            result = {"image_id": image_id, "category_id": 1, "segmentation": rle,
                      "score": float(score)}
            self.results["all"].append(result)
            if index in matched:
                self.results["matched"].append(result)

    def coco_files(self) -> tuple[dict, dict[str, list[dict]]]:
        gt = {"images": self.images, "annotations": self.annotations,
              "categories": [{"id": 1, "name": "object"}]}
        return gt, self.results

    def result(self) -> dict:
        """{"matched": {AP, AP50, AP75, predictions}, "all": {...}, "images", "instances"}."""
        gt, results = self.coco_files()
        out: dict = {v: {**coco_segm_ap(gt, results[v]), "predictions": len(results[v])}
                     for v in VARIANTS}
        return {**out, "images": len(self.images), "instances": len(self.annotations)}


def coco_segm_ap(gt: dict, results: list[dict]) -> dict[str, float]:
    """AP, AP50, AP75 of `results` on the COCO dataset `gt` by pycocotools' COCOeval."""
    if not results or not gt["annotations"]:
        return {k: 0.0 for k in AP_KEYS}
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):      # COCO and COCOeval print progress
        coco = COCO()
        coco.dataset = {**gt, "images": list(gt["images"]), "annotations": list(gt["annotations"])}
        coco.createIndex()
        found = coco.loadRes([dict(r) for r in results])
        evaluator = COCOeval(coco, found, iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {k: max(float(v), 0.0) for k, v in zip(AP_KEYS, evaluator.stats[:3])}


def format_cos_table(results: dict[str, dict]) -> str:
    """Markdown: one row per engine and variant."""
    head = "| engine | kept | AP ↑ | AP50 ↑ | AP75 ↑ | predictions | instances | images |"
    rows = [f"| {name} | {label} | " + " | ".join(f"{r[v][k]:.3f}" for k in AP_KEYS)
            + f" | {r[v]['predictions']} | {r['instances']} | {r['images']} |"
            for name, r in results.items() for v, label in VARIANTS.items()]
    return "\n".join([head, "|---|---|" + "---|" * 6, *rows])
