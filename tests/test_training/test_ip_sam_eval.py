"""`annotator eval ip-sam`: IP-SAM's metrics (MAE, wF, S, mean E, mDice, mIoU) of its map
beside the paper's baselines on the same SAM 2 file: a null prompt, one click at the
truth's centroid, and sam2-amg's top-1 by predicted IoU (tiny random models)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from training.auto_protocols import baseline_prediction, centroid_point
from training.evaluate_auto import run_auto_eval
from training.items import items_from_arrays
from training.metrics import binarised_dice_iou

from ip_sam_helpers import install_ip_sam


def test_mdice_and_miou_binarise_at_half_and_agree_with_pysodmetrics():
    import py_sod_metrics as psm
    rng = np.random.default_rng(0)
    handlers = {"dice": psm.DICEHandler(False, False, with_binary=True, sample_based=True),
                "iou": psm.IOUHandler(False, False, with_binary=True, sample_based=True)}
    ref = psm.FmeasureV2(handlers)
    ours = []
    for i in range(4):
        gt = np.zeros((30, 40), bool)
        gt[5 + i:20, 8:30 - i] = True
        pred = np.clip(gt * 0.7 + rng.random(gt.shape) * 0.45, 0, 1)
        ref.step((pred * 255).round().astype(np.uint8), gt.astype(np.uint8) * 255, normalize=True)
        ours.append(binarised_dice_iou((pred * 255).round() / 255, gt))
    r = ref.get_results()
    assert np.mean([d for d, _ in ours]) == pytest.approx(r["dice"]["binary"], abs=1e-12)
    assert np.mean([u for _, u in ours]) == pytest.approx(r["iou"]["binary"], abs=1e-12)
    assert binarised_dice_iou(np.full((2, 2), 0.5), np.ones((2, 2), bool)) == (0.0, 0.0)  # > 0.5, not >=


def test_the_centroid_click_lies_on_the_mask_even_for_a_ring():
    square = np.zeros((20, 20), bool)
    square[4:11, 6:17] = True
    assert centroid_point(square).tolist() == [11, 7]     # (x, y) of the mean pixel
    ring = np.zeros((21, 21), bool)
    ring[2:19, 2:19] = True
    ring[5:16, 5:16] = False                            # centroid (10, 10) is in the hole
    x, y = centroid_point(ring).astype(int)
    assert ring[y, x] and min(abs(x - 10), abs(y - 10)) == 0 and max(abs(x - 10), abs(y - 10)) == 6
    with pytest.raises(ValueError, match="empty"):
        centroid_point(np.zeros((3, 3), bool))


def test_sam2_baselines_are_the_hosts_null_and_centroid_answers(tiny_sam2_model):
    from engines.hosts import Sam2Engine
    from engines.types import Prompt
    host = Sam2Engine(tiny_sam2_model, backbone_key="t", device="cpu")
    image = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    gt = np.zeros((48, 64), bool)
    gt[10:31, 20:51] = True                                # centroid (x 35, y 20)
    emb = host.embed(image)
    null = baseline_prediction(host, emb, gt, "null")
    assert (null == host.predict_unprompted(emb).masks[0]).all()
    click = host.predict(emb, Prompt(points=np.array([[35, 20]]), multimask=True))
    assert (baseline_prediction(host, emb, gt, "centroid-point") == click.masks[0]).all()
    assert click.scores[0] == click.scores.max()
    items = items_from_arrays(image, [gt])
    rows = run_auto_eval({"sam2": (host, ("null", "centroid-point"))}, items, metrics="cod").maps
    assert list(rows) == ["sam2 null prompt", "sam2 1-pt GT centroid"]
    assert list(rows["sam2 null prompt"]) == ["MAE", "wF", "S", "meanE", "mDice", "mIoU", "n"]


def _ip_args(tmp_path):
    from training.synthetic import generate
    files = install_ip_sam(tmp_path / "models")
    data = generate(tmp_path / "synth", n_images=2, size=64, seed=3)
    return ["eval", "ip-sam", "--backbone", str(files["sam2"]), "--plugin", str(files["plugin"]),
            "--data", str(data), "--images", str(tmp_path / "synth" / "images"), "--split", "all",
            "--device", "cpu", "--baseline-option", "points_per_side=4"]


def test_annotator_eval_ip_sam_prints_the_paper_table_with_its_baselines(tmp_path, capsys):
    from annotator.cli import main
    out = tmp_path / "eval.json"
    assert main(_ip_args(tmp_path) + ["--json", str(out)]) == 0
    captured = capsys.readouterr()
    report = json.loads(out.read_text())
    assert report["metrics"] == "cod" and report["cos"] == {}
    assert report["baseline_checkpoint"].endswith("sam2_tiny_test.pt")       # --backbone's file
    assert list(report["maps"]) == ["ip-sam", "ip-sam top-score", "sam2 null prompt",
                                    "sam2 1-pt GT centroid", "sam2-amg top-score"]
    for name, r in report["maps"].items():
        assert r["n"] == 2 and 0 <= r["MAE"] <= 1 and 0 <= r["mDice"] <= 1 and 0 <= r["mIoU"] <= r["mDice"], name
        assert f"| {name} |" in captured.out
    assert "| engine | MAE ↓ | wF ↑ | S ↑ | mean E ↑ | mDice ↑ | mIoU ↑ | images |" in captured.out
    assert "[2/2] images" in captured.err


def test_annotator_eval_ip_sam_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    from annotator.cli import main
    args = _ip_args(tmp_path)
    assert main(args + ["--baseline", str(tmp_path / "gone.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "gone.pt does not exist" in err
    assert main(args + ["--pick", "best"]) == 2
    assert "--pick 'best': choose from" in capsys.readouterr().err
    assert main(args + ["--baseline-option", "points_per_side=0"]) == 2
    assert "points_per_side" in capsys.readouterr().err
    assert main(args + ["--baseline-option", "grid"]) == 2
    assert "--baseline-option 'grid' is not KEY=VALUE" in capsys.readouterr().err
    assert main(args + ["--split", "val", "--val-fraction", "0"]) == 2
    assert "split is empty" in capsys.readouterr().err
