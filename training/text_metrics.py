"""SAM-MI's two scores: semantic mIoU from a confusion matrix accumulated over a dataset
(ignore label 255, as detectron2's SemSegEvaluator) and instance mask AP of the proposed
instances (pycocotools COCOeval, iouType "segm")."""
from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

from .semantic import IGNORE


class Confusion:
    """(K + 1) x (K + 1) counts, rows the prediction, columns the truth (detectron2's
    layout); truth pixels labelled 255 are left out, predictions outside 0..K-1 count
    as the extra "no class" row."""

    def __init__(self, num_classes: int):
        self.k = int(num_classes)
        self.matrix = np.zeros((self.k + 1, self.k + 1), np.int64)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        pred, gt = np.asarray(pred).astype(np.int64), np.asarray(gt).astype(np.int64)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction {pred.shape} and truth {gt.shape} differ in size")
        keep = gt != IGNORE
        pred, gt = pred[keep], gt[keep]
        if gt.size and gt.max() >= self.k:
            raise ValueError(f"truth holds class {int(gt.max())}, the vocabulary has {self.k}")
        pred = np.where((pred >= 0) & (pred < self.k), pred, self.k)
        self.matrix += np.bincount((self.k + 1) * pred + gt,
                                   minlength=(self.k + 1) ** 2).reshape(self.k + 1, self.k + 1)

    def scores(self) -> dict[str, float]:
        """mIoU and pixel accuracy in [0, 1] (SemSegEvaluator: IoU over classes present in
        the truth, divided by the classes present in the truth or the prediction)."""
        m = self.matrix[:-1, :-1].astype(np.float64)
        tp = np.diag(m)
        # truth pixels per class; unlike detectron2 (whose predictions are always a class)
        # a "no class" prediction counts as a miss
        pos_gt = self.matrix[:, :-1].sum(0).astype(np.float64)
        pos_pred = m.sum(1)
        acc_valid = pos_gt > 0
        iou_valid = (pos_gt + pos_pred) > 0
        iou = np.zeros(self.k)
        union = pos_gt + pos_pred - tp
        iou[acc_valid] = tp[acc_valid] / union[acc_valid]
        miou = float(iou[acc_valid].sum() / max(1, iou_valid.sum()))
        total = pos_gt.sum()
        return {"miou": miou, "pixel_acc": float(tp.sum() / total) if total else float("nan"),
                "per_class_iou": iou.tolist()}


def mask_ap(gt: Sequence[dict], detections: Sequence[dict], categories: Sequence[str],
            sizes: dict[int, tuple[int, int]]) -> dict[str, float]:
    """COCO mask AP (0.50:0.95), AP50 and AP75 in [0, 1]. `gt`: {"image_id", "category",
    "mask"}; `detections`: the same plus "score"; `sizes`: image id -> (H, W). Detections
    of a name outside `categories` are not scored (their class is not in the truth)."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    cat_id = {n: i + 1 for i, n in enumerate(categories)}

    def rle(mask):
        r = mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
        r["counts"] = r["counts"].decode("ascii")
        return r

    anns = []
    for i, g in enumerate(gt):
        r = rle(g["mask"])
        anns.append({"id": i + 1, "image_id": g["image_id"], "category_id": cat_id[g["category"]],
                     "segmentation": r, "area": float(mask_utils.area(r)),
                     "bbox": mask_utils.toBbox(r).tolist(), "iscrowd": 0})
    dets = [{"image_id": d["image_id"], "category_id": cat_id[d["category"]],
             "segmentation": rle(d["mask"]), "score": float(d["score"])}
            for d in detections if d["category"] in cat_id]
    if not anns:
        return {"ap": float("nan"), "ap50": float("nan"), "ap75": float("nan")}
    if not dets:
        return {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}
    truth = COCO()
    truth.dataset = {"images": [{"id": i, "height": h, "width": w} for i, (h, w) in sizes.items()],
                     "annotations": anns,
                     "categories": [{"id": c, "name": n} for n, c in cat_id.items()]}
    with contextlib.redirect_stdout(io.StringIO()):     # pycocotools prints its progress
        truth.createIndex()
        result = truth.loadRes(dets)
        ev = COCOeval(truth, result, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ap, ap50, ap75 = (max(0.0, float(v)) for v in ev.stats[:3])   # -1: no such instances
    return {"ap": ap, "ap50": ap50, "ap75": ap75}
