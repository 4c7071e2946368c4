"""`annotator eval pmg-sam`: DIS metrics of the probability map on each image's union
mask, beside sam2-amg with the top-score pick and the oracle top-1."""
from __future__ import annotations

import json

import numpy as np
import pytest

from engines.types import Proposals
from training.evaluate_auto import evaluate_auto, format_auto_table, pick_prediction
from training.items import items_from_arrays

from pmg_helpers import install_pmg, patch_tiny_u2net


def scene(h=48, w=64):
    image = np.zeros((h, w, 3), np.uint8)
    a, b = np.zeros((h, w), bool), np.zeros((h, w), bool)
    a[8:20, 8:24], b[26:40, 36:56] = True, True
    image[a | b] = 200
    return image, [a, b]


class Oracle:
    """A stand-in proposer: the truth as its probability map, and two masks of which the
    higher-scored one is wrong."""
    name = "fake"

    def __init__(self, truth):
        self.truth = truth

    def embed(self, image):
        return image

    def propose(self, emb, options=None):
        wrong = ~self.truth
        masks = np.stack([wrong, self.truth])
        return Proposals(masks, np.array([0.9, 0.5], np.float32), np.zeros((2, 4), np.float32),
                         self.name, extras={"probability": self.truth.astype(np.uint8) * 255})


def test_picks_and_a_perfect_map_score_perfectly():
    image, masks = scene()
    truth = masks[0] | masks[1]
    found = Oracle(truth).propose(image)
    assert (pick_prediction(found, truth, "oracle") == truth).all()
    assert (pick_prediction(found, truth, "top-score") == ~truth).all()
    empty = Proposals.empty(truth.shape, "x")
    assert not pick_prediction(empty, truth, "top-score").any()
    with pytest.raises(ValueError, match="gives no probability map"):
        pick_prediction(empty, truth, "map")
    results = evaluate_auto({"fake": (Oracle(truth), ("map", "top-score", "oracle"))},
                            items_from_arrays(image, masks))
    assert set(results) == {"fake", "fake top-score", "fake oracle top-1"}
    for row in ("fake", "fake oracle top-1"):     # the union of both instances is the target
        r = results[row]
        assert (r["maxF"], r["MAE"], r["S"], r["HCE"], r["n"]) == pytest.approx((1, 0, 1, 0, 1))
    assert results["fake top-score"]["MAE"] == 1 and results["fake top-score"]["maxF"] < 0.3
    table = format_auto_table(results)
    assert "| fake oracle top-1 | 1.000 |" in table and "maxF" in table and "HCE" in table


def _pmg_args(tmp_path, monkeypatch, baseline):
    from training.synthetic import generate
    patch_tiny_u2net(monkeypatch)
    files = install_pmg(tmp_path / "models")
    data = generate(tmp_path / "synth", n_images=3, size=64, seed=2)
    return ["eval", "pmg-sam", "--backbone", str(files["hiera"]), "--plugin", str(files["plugin"]),
            "--data", str(data), "--images", str(tmp_path / "synth" / "images"), "--split", "all",
            "--baseline", str(baseline), "--device", "cpu", "--progress-every", "2",
            "--baseline-option", "points_per_side=4"]


@pytest.mark.parametrize("family", ["sam", "sam2"])
def test_annotator_eval_pmg_sam_prints_dis_and_cos_beside_the_amg_of_the_baseline_file(
        tmp_path, monkeypatch, capsys, family):
    """The baseline file's family picks the manifest baseline's counterpart: a SAM file
    gives sam-amg rows, a SAM 2 file sam2-amg rows (both tiny, random weights)."""
    from annotator.cli import main
    from engines.hosts import tiny_sam, tiny_sam2
    import torch
    baseline = tmp_path / f"{family}.pt"
    torch.save((tiny_sam() if family == "sam" else tiny_sam2(img_size=64)).state_dict(), baseline)
    out = tmp_path / "eval.json"
    args = _pmg_args(tmp_path, monkeypatch, baseline)
    assert main(args + ["--json", str(out), "--coco-dir", str(tmp_path / "coco")]) == 0
    captured = capsys.readouterr()
    table, amg = captured.out, f"{family}-amg"
    report = json.loads(out.read_text())
    assert report["metrics"] == "dis" and report["images"] == 3
    assert list(report["maps"]) == ["pmg-sam", "pmg-sam top-score", f"{amg} top-score", f"{amg} oracle top-1"]
    for name, r in report["maps"].items():
        assert r["n"] == 3 and 0 <= r["maxF"] <= 1 and 0 <= r["MAE"] <= 1 and 0 <= r["S"] <= 1, name
        assert f"| {name} |" in table
    assert list(report["cos"]) == ["pmg-sam", amg]
    for name, r in report["cos"].items():
        assert r["images"] == 3 and r["instances"] >= 3
        assert r["matched"]["predictions"] <= r["all"]["predictions"]
        assert 0 <= r["all"]["AP"] <= 1 and 0 <= r["matched"]["AP"] <= 1
        assert f"| {name} | all components |" in table
    from pycocotools.coco import COCO
    gt = COCO(str(tmp_path / "coco" / "gt.json"))          # the files load in pycocotools
    assert len(gt.getImgIds()) == 3 and len(gt.getAnnIds()) == report["cos"]["pmg-sam"]["instances"]
    found = json.loads((tmp_path / "coco" / "pmg-sam.all.json").read_text())
    assert len(found) == report["cos"]["pmg-sam"]["all"]["predictions"]
    if found:
        gt.loadRes(found)
    assert "[2/3] images" in captured.err and "[3/3] images" in captured.err


def test_annotator_eval_pmg_sam_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    from annotator.cli import main
    args = _pmg_args(tmp_path, monkeypatch, tmp_path / "missing.pt")
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.pt does not exist" in err
    not_sam = tmp_path / "not_sam.pt"
    import torch
    torch.save({"w": torch.zeros(2)}, not_sam)
    args[args.index("--baseline") + 1] = str(not_sam)
    assert main(args) == 2
    assert "not a SAM or SAM 2.1 checkpoint" in capsys.readouterr().err
    assert main(args + ["--pick", "nope"]) == 2
    assert "--pick 'nope': choose from map, top-score, oracle" in capsys.readouterr().err
    assert main(args + ["--split", "val", "--val-fraction", "0"]) == 2
    assert "split is empty" in capsys.readouterr().err
