"""training/paired.py: the paired bootstrap of plugin − host over objects."""
from __future__ import annotations

import math

import numpy as np
import pytest

from training.paired import add_paired, format_paired, paired_bootstrap


def _pair(n: int, shift: float, noise: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    host = rng.uniform(40, 80, n)
    return host, host + shift + rng.normal(0, noise, n)


def test_a_known_difference_lies_inside_a_narrow_interval():
    host, plugin = _pair(400, shift=3.0, noise=2.0)
    r = paired_bootstrap(host, plugin)
    assert r["n"] == 400
    assert r["lo"] < 3.0 < r["hi"] and r["lo"] < r["diff"] < r["hi"]
    # paired: the spread of the host scores (±20) must not widen the interval
    assert r["hi"] - r["lo"] < 1.0


def test_no_difference_gives_an_interval_around_zero():
    host, plugin = _pair(200, shift=0.0, noise=5.0, seed=1)
    plugin = plugin - np.mean(plugin - host)          # exactly zero mean difference
    r = paired_bootstrap(host, plugin)
    assert r["diff"] == pytest.approx(0.0, abs=1e-9)
    assert r["lo"] < 0 < r["hi"]


def test_the_same_seed_gives_the_same_interval_and_another_seed_another():
    host, plugin = _pair(50, shift=1.0, noise=4.0)
    a, b = paired_bootstrap(host, plugin, seed=7), paired_bootstrap(host, plugin, seed=7)
    assert a == b
    c = paired_bootstrap(host, plugin, seed=8)
    assert c["diff"] == a["diff"] and (c["lo"], c["hi"]) != (a["lo"], a["hi"])


def test_one_object_and_no_objects():
    assert paired_bootstrap([50.0], [62.5]) == {"diff": 12.5, "lo": 12.5, "hi": 12.5, "n": 1}
    r = paired_bootstrap([], [])
    assert r["n"] == 0 and all(math.isnan(r[k]) for k in ("diff", "lo", "hi"))


def test_missing_scores_drop_their_pair_and_bad_shapes_are_refused():
    r = paired_bootstrap([10.0, float("nan"), 30.0], [12.0, 99.0, 32.0])
    assert r["n"] == 2 and r["diff"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap([1.0], [1.0], resamples=0)


def test_many_objects_are_resampled_in_chunks(monkeypatch):
    from training import paired
    host, plugin = _pair(300, shift=1.0, noise=3.0)
    whole = paired_bootstrap(host, plugin, resamples=500)
    monkeypatch.setattr(paired, "_CHUNK", 300 * 7)    # 7 resamples per draw
    chunked = paired_bootstrap(host, plugin, resamples=500)
    assert chunked["n"] == 300 and chunked["lo"] < 1.0 < chunked["hi"]
    assert chunked["diff"] == whole["diff"]
    assert abs((chunked["hi"] - chunked["lo"]) - (whole["hi"] - whole["lo"])) < 0.3


def _scores(values, st=True):
    rows = [{"object": f"img.png#{i}", "miou": v, "mbiou": v / 2, "st": v if st else None}
            for i, v in enumerate(values)]
    return {"miou": float(np.mean(values)), "mbiou": 0.0, "st": float("nan"), "n": len(rows),
            "per_object": rows}


def test_add_paired_stores_every_metric_and_the_table_shows_it():
    results = {"hq-sam": {"noisy-box": _scores([60, 70, 80]), "tight-box": _scores([90, 90, 90], st=False)},
               "sam": {"noisy-box": _scores([50, 60, 70]), "tight-box": _scores([85, 85, 85], st=False)}}
    add_paired(results, "hq-sam", "sam", resamples=100)
    noisy = results["hq-sam"]["noisy-box"]["paired"]
    assert noisy["host"] == "sam" and noisy["n"] == 3
    assert (noisy["diff"], noisy["lo"], noisy["hi"]) == (10.0, 10.0, 10.0)
    assert noisy["mbiou"]["diff"] == 5.0 and noisy["st"]["diff"] == 10.0
    tight = results["hq-sam"]["tight-box"]["paired"]
    assert tight["diff"] == 5.0 and "st" not in tight           # ST undefined for one prompt
    assert "paired" not in results["sam"]["noisy-box"]
    table = format_paired(results).splitlines()
    assert len(table) == 4 and "Δ mIoU" in table[0]
    assert "| noisy-box | sam 60.0 | hq-sam 70.0 | +10.0 [+10.0, +10.0] | +5.0" in table[2]
    assert table[3].endswith("| - | 3 |")


def test_add_paired_refuses_objects_that_do_not_line_up():
    a, b = _scores([1, 2]), _scores([1, 2])
    b["per_object"].reverse()
    with pytest.raises(ValueError, match="different objects"):
        add_paired({"p": {"x": a}, "h": {"x": b}}, "p", "h")
