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


def test_annotator_eval_pmg_sam_prints_dis_metrics_beside_sam2_amg(tmp_path, monkeypatch, capsys):
    from annotator.cli import main
    from engines.hosts import Sam2Engine, tiny_sam2
    from engines.sam_amg import AmgOptions, Sam2AmgEngine
    from training.synthetic import generate
    patch_tiny_u2net(monkeypatch)
    files = install_pmg(tmp_path / "models")
    tiny = Sam2AmgEngine(Sam2Engine(tiny_sam2(seed=1), backbone_key="tiny", device="cpu"),
                         defaults=AmgOptions(points_per_side=4, pred_iou_thresh=0.0,
                                             stability_score_thresh=0.0))
    monkeypatch.setattr(Sam2AmgEngine, "from_checkpoint", classmethod(lambda cls, path, **kw: tiny))
    data = generate(tmp_path / "synth", n_images=3, size=96, seed=2)
    out = tmp_path / "eval.json"
    args = ["eval", "pmg-sam", "--backbone", str(files["hiera"]), "--plugin", str(files["plugin"]),
            "--data", str(data), "--images", str(tmp_path / "synth" / "images"), "--split", "all",
            "--baseline", str(tmp_path / "sam2.pt"), "--device", "cpu", "--json", str(out)]
    assert main(args) == 0
    table = capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert list(rows) == ["pmg-sam", "pmg-sam top-score", "sam2-amg top-score", "sam2-amg oracle top-1"]
    for name, r in rows.items():
        assert r["n"] == 3 and 0 <= r["maxF"] <= 1 and 0 <= r["MAE"] <= 1 and 0 <= r["S"] <= 1, name
        assert f"| {name} |" in table
    assert main(args[:-2] + ["--pick", "nope"]) == 2
    assert "--pick 'nope': choose from map, top-score, oracle" in capsys.readouterr().err
