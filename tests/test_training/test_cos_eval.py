"""COS protocol: Hungarian matching and COCO mask AP through real pycocotools, matched
predictions only (the paper) and every component kept."""
import json

import numpy as np
import pytest

from training.cos_eval import CosEval, encode, format_cos_table, match_instances


def blobs(h=40, w=60):
    a, b, c = (np.zeros((h, w), bool) for _ in range(3))
    a[4:14, 4:20], b[20:34, 30:52], c[2:10, 40:56] = True, True, True
    return a, b, c


def test_hungarian_matching_pairs_each_blob_with_its_instance():
    a, b, c = blobs()
    shifted_b = np.roll(b, 1, axis=1)
    pairs = match_instances([encode(shifted_b), encode(a), encode(c)], [encode(a), encode(b)])
    assert sorted((p, g) for p, g, _ in pairs) == [(0, 1), (1, 0)]     # c overlaps nothing: no match
    assert dict(((p, g), iou) for p, g, iou in pairs)[(1, 0)] == 1.0
    assert match_instances([], [encode(a)]) == []


def test_a_perfect_prediction_scores_ap_1_and_the_coco_files_are_json():
    a, b, _ = blobs()
    ev = CosEval()
    ev.add([a, b], np.stack([b, a]), [0.8, 0.9])
    ev.add([b], np.stack([b]), [0.7])
    r = ev.result()
    for variant in ("matched", "all"):
        assert (r[variant]["AP"], r[variant]["AP50"], r[variant]["AP75"]) == pytest.approx((1, 1, 1))
    assert (r["images"], r["instances"], r["all"]["predictions"]) == (2, 3, 3)
    gt, results = ev.coco_files()
    json.loads(json.dumps({"gt": gt, "results": results}))
    assert "| matched only (paper) | 1.000 | 1.000 | 1.000 |" in format_cos_table({"x": r})


def test_an_empty_prediction_scores_0():
    a, b, _ = blobs()
    ev = CosEval()
    ev.add([a, b], np.zeros((0, *a.shape), bool), np.zeros(0))
    r = ev.result()
    assert r["matched"]["AP"] == r["all"]["AP"] == r["all"]["AP50"] == 0 and r["all"]["predictions"] == 0


def test_an_unmatched_false_positive_lowers_only_the_all_components_ap():
    """One instance found exactly (score 0.5) plus a confident blob elsewhere (0.9): the
    paper's matched-only count drops the blob (AP 1); kept, it ranks first and halves the
    precision at every recall (AP 0.5)."""
    a, _, c = blobs()
    ev = CosEval()
    ev.add([a], np.stack([c, a]), [0.9, 0.5])
    r = ev.result()
    assert r["matched"]["AP"] == pytest.approx(1.0) and r["matched"]["predictions"] == 1
    assert r["all"]["AP"] == pytest.approx(0.5, abs=0.01) and r["all"]["predictions"] == 2
    assert r["all"]["AP"] < r["matched"]["AP"]


def test_two_blobs_of_a_map_become_two_instances_matched_to_their_truths():
    """PMG-SAM's COS post-processing end to end: threshold 0.5, 8-connected components
    (score = mean probability), Hungarian matching, AP 1 for the two exact blobs."""
    from engines.pmg_sam import PmgOptions, instances
    a, b, _ = blobs()
    prob = np.where(a, 0.9, np.where(b, 0.7, 0.1))
    masks, scores, _, _, found = instances(prob, PmgOptions(max_instances=0))
    assert found == 2 and scores.tolist() == pytest.approx([0.9, 0.7])
    pairs = match_instances([encode(m) for m in masks], [encode(b), encode(a)])
    assert sorted((p, g) for p, g, _ in pairs) == [(0, 1), (1, 0)]
    ev = CosEval()
    ev.add([b, a], masks, scores)
    assert ev.result()["matched"]["AP"] == pytest.approx(1.0)
