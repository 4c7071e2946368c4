"""SAM-MI's evaluation: the confusion-matrix mIoU (ignore 255), mask AP through
pycocotools, and `annotator eval sam-mi` on tiny random-weight files beside its
baselines (the dense-grid pipeline, the training-free mode)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from annotator.cli import main
from sam_mi_helpers import sam_mi_dataset, LENIENT, scene, scene_items
from training.evaluate_text import evaluate_text
from training.semantic import IGNORE
from training.text_metrics import Confusion, mask_ap
from training.trainer import TrainConfig, Trainer


def test_a_perfect_prediction_scores_miou_1_and_ignored_pixels_do_not_count():
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [IGNORE, IGNORE, 2, 2]], np.uint8)
    c = Confusion(3)
    pred = gt.astype(np.int64).copy()
    pred[2, :2] = 1                     # wrong, but on ignored pixels
    c.add(pred, gt)
    assert c.scores()["miou"] == pytest.approx(1.0)
    assert c.scores()["pixel_acc"] == pytest.approx(1.0)
    wrong = gt.astype(np.int64).copy()
    wrong[0, 0] = 1                     # one class-0 pixel called class 1
    d = Confusion(3)
    d.add(wrong, gt)
    iou = d.scores()["per_class_iou"]
    assert iou[0] == pytest.approx(3 / 4) and iou[1] == pytest.approx(4 / 5) and iou[2] == 1.0
    assert d.scores()["miou"] == pytest.approx((3 / 4 + 4 / 5 + 1) / 3)
    # a class in neither truth nor prediction does not dilute the mean
    e = Confusion(5)
    e.add(gt, gt)
    assert e.scores()["miou"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ in size"):
        e.add(gt[:2], gt)


def test_mask_ap_is_1_for_the_truth_and_lower_for_a_wrong_class():
    _, objects = scene()
    truth = [{"image_id": 1, "category": c, "mask": m} for m, c in objects]
    perfect = [{**t, "score": 0.9} for t in truth]
    ap = mask_ap(truth, perfect, ["square", "disc"], {1: (96, 128)})
    assert ap["ap"] == pytest.approx(1.0) and ap["ap50"] == pytest.approx(1.0)
    swapped = [{**perfect[0], "category": "disc"}, {**perfect[1], "category": "square"}]
    assert mask_ap(truth, swapped, ["square", "disc"], {1: (96, 128)})["ap"] == pytest.approx(0.0)
    assert mask_ap(truth, [], ["square", "disc"], {1: (96, 128)})["ap"] == 0.0


class _Oracle:
    """An engine that answers with the truth (checks the evaluator's bookkeeping)."""
    name = "oracle"

    def embed(self, image):
        return image

    def propose(self, emb, options):
        from engines.types import Proposals
        _, objects = scene()
        names = list(options["classes"])
        masks = np.stack([m for m, _ in objects])
        semantic = np.full(masks.shape[1:], names.index("floor"), np.uint8)
        for m, c in objects:
            semantic[m] = names.index(c)
        boxes = np.zeros((2, 4), np.float32)
        return Proposals(masks, np.array([0.9, 0.8], np.float32), boxes, "oracle",
                         class_names=[c for _, c in objects], classes=tuple(names),
                         extras={"semantic": semantic, "points": [[1, 1]], "decoder_passes": 1})


def test_the_evaluator_gives_an_oracle_miou_1_and_ap_1():
    results = evaluate_text({"oracle": (_Oracle(), {})}, scene_items(), background="floor")
    r = results["oracle"]
    assert r["miou"] == pytest.approx(1.0) and r["ap"] == pytest.approx(1.0)
    assert r["per_class_iou"] == pytest.approx({"square": 1.0, "disc": 1.0, "floor": 1.0})
    assert r["images"] == 1 and r["decoder_passes"] == 1
    # without a background class the unlabelled floor is ignored, whatever it is called
    assert evaluate_text({"o": (_Oracle(), {})}, scene_items(), vocabulary=["square", "disc", "floor"]
                         )["o"]["miou"] == pytest.approx(1.0)


class _Silent(_Oracle):
    """An engine that finds nothing on the image (what a weak trained model can do)."""

    def propose(self, emb, options):
        from engines.types import Proposals
        names = list(options["classes"])
        semantic = np.full(scene()[1][0][0].shape, names.index("floor"), np.uint8)
        return Proposals.empty(semantic.shape, "silent", classes=tuple(names),
                               extras={"semantic": semantic})


def test_an_engine_that_finds_no_instance_scores_ap_0_instead_of_failing():
    r = evaluate_text({"silent": (_Silent(), {})}, scene_items(), background="floor")["silent"]
    assert r["ap"] == 0.0 and 0.0 <= r["miou"] < 1.0


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return sam_mi_dataset(tmp_path_factory, "sammi-eval")


def test_annotator_eval_sam_mi_reports_the_engine_beside_both_baselines(dataset, capsys):
    root, sam, clip, data, images = dataset
    result = Trainer(TrainConfig(engine="sam-mi", backbone=str(sam), out=str(root / "run"), steps=1,
                                 batch_size=1, val_fraction=0.0, device="cpu", progress=False,
                                 options={"clip": str(clip), "stage": 2, "sam_options": LENIENT}),
                     items=scene_items()).run()
    out = root / "eval.json"
    code = main(["eval", "sam-mi", "--data", str(data), "--images", str(images), "--split", "all",
                 "--backbone", str(sam), "--plugin", str(result.plugin), "--option", f"clip={clip}",
                 "--option", "pred_iou_thresh=0", "--option", "stability_score_thresh=0",
                 "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    table = capsys.readouterr().out
    assert "sam-mi (trained)" in table and "dense 8x8 grid (trained)" in table
    assert "sam-mi (training-free)" in table
    rows = json.loads(out.read_text())
    grid, tspp = rows["dense 8x8 grid (trained)"], rows["sam-mi (trained)"]
    assert grid["points"] == 64 and tspp["points"] < 64
    for r in rows.values():
        assert 0.0 <= r["miou"] <= 1.0 and 0.0 <= r["ap"] <= 1.0 and r["images"] == 2


def test_annotator_eval_sam_mi_bad_input(dataset, capsys):
    root, sam, clip, data, images = dataset
    base = ["eval", "sam-mi", "--data", str(data), "--images", str(images), "--split", "all"]
    assert main([*base, "--backbone", str(root / "none.pth"), "--option", f"clip={clip}"]) == 2
    assert "none.pth" in capsys.readouterr().err
    assert main([*base, "--backbone", str(sam), "--option", f"clip={clip}",
                 "--option", "pred_iou_thresh=3"]) == 2
    assert "pred_iou_thresh" in capsys.readouterr().err
    assert main([*base, "--backbone", str(sam), "--option", f"clip={clip}", "--option", "colour=1"]) == 2
    assert "colour" in capsys.readouterr().err
