"""`annotator train` / `annotator eval` end to end on a generated dataset with tiny models:
a SAM trained from scratch, an HQ-SAM plugin trained on top, both evaluated."""
from __future__ import annotations

import json

import pytest

from annotator.cli import main
from training.synthetic import generate


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    return generate(root, n_images=8, size=128, seed=3), root / "images"


@pytest.fixture(scope="module")
def tiny_backbone(dataset, tmp_path_factory):
    data, images = dataset
    out = tmp_path_factory.mktemp("sam")
    code = main(["train", "sam", "--backbone", "scratch:micro", "--data", str(data),
                 "--images", str(images), "--steps", "2", "--batch-size", "2", "--points", "256",
                 "--out", str(out), "--val-fraction", "0.25"])
    assert code == 0
    (path,) = out.glob("*.pth")
    return path


def test_train_streams_events_on_stdout(dataset, tmp_path, capsys):
    data, images = dataset
    code = main(["train", "sam", "--backbone", "scratch:micro", "--data", str(data), "--images",
                 str(images), "--steps", "2", "--batch-size", "2", "--points", "256",
                 "--out", str(tmp_path), "--events", "-"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "start" and names[-1] == "done" and names.count("step") == 2
    assert events[-1]["plugin"].endswith(".pth")


def test_plugin_trained_on_tiny_sam_evaluates_beside_its_host(dataset, tiny_backbone, tmp_path,
                                                             capsys):
    data, images = dataset
    out = tmp_path / "hq"
    assert main(["train", "hq-sam", "--backbone", str(tiny_backbone), "--data", str(data),
                 "--images", str(images), "--steps", "2", "--batch-size", "2",
                 "--points", "256", "--out", str(out)]) == 0
    (plugin,) = out.glob("*.safetensors")
    capsys.readouterr()
    result = tmp_path / "eval.json"
    assert main(["eval", "hq-sam", "--backbone", str(tiny_backbone), "--plugin", str(plugin),
                 "--data", str(data), "--images", str(images), "--protocol",
                 "tight-box,1-point", "--prompts", "2", "--split", "all",
                 "--json", str(result)]) == 0
    captured = capsys.readouterr()
    table = captured.out
    assert "hq-sam mIoU" in table and "sam mIoU" in table
    scores = json.loads(result.read_text())
    assert set(scores) == {"hq-sam", "sam"}
    n = scores["sam"]["1-point"]["n"]
    assert n > 0 and f"[{n}/{n}] objects" in captured.err       # the progress line
    for per_engine in scores.values():
        assert 0 <= per_engine["tight-box"]["miou"] <= 100
        for proto, r in per_engine.items():
            rows = r["per_object"]
            assert len(rows) == r["n"] == n
            assert r["miou"] == pytest.approx(sum(o["miou"] for o in rows) / n)
            assert all((o["st"] is None) == (proto == "tight-box") for o in rows)
    objects = [[o["object"] for o in scores[e]["1-point"]["per_object"]] for e in scores]
    assert objects[0] == objects[1] and len(set(objects[0])) == n     # aligned, one per object
    for proto in ("tight-box", "1-point"):
        paired = scores["hq-sam"][proto]["paired"]
        assert paired["host"] == "sam" and paired["n"] == n
        assert paired["diff"] == pytest.approx(scores["hq-sam"][proto]["miou"]
                                               - scores["sam"][proto]["miou"])
        assert paired["lo"] <= paired["diff"] <= paired["hi"]
        assert f"| {proto} | sam " in table
    assert "st" in scores["hq-sam"]["1-point"]["paired"]
    assert "paired" not in scores["sam"]["tight-box"]
    assert "Δ mIoU [95% CI]" in table


def test_bad_inputs_are_named(dataset, tiny_backbone, tmp_path, capsys):
    data, images = dataset
    assert main(["train", "hq-sam", "--backbone", str(tiny_backbone), "--data",
                 str(tmp_path / "missing.json"), "--images", str(images)]) == 2
    assert "missing.json" in capsys.readouterr().err
    assert main(["train", "classic", "--backbone", str(tiny_backbone), "--data", str(data),
                 "--images", str(images)]) == 2
    err = capsys.readouterr().err
    assert "classic" in err and "hq-sam" in err
    assert main(["eval", "sam", "--backbone", str(tiny_backbone), "--data", str(data),
                 "--images", str(images), "--protocol", "wobbly-box"]) == 2
    assert "wobbly-box" in capsys.readouterr().err
    assert main(["eval", "sam", "--backbone", str(tiny_backbone), "--data", str(data),
                 "--images", str(images), "--bootstrap", "0"]) == 2
    assert "--bootstrap 0" in capsys.readouterr().err


def test_eval_refuses_an_option_the_engine_does_not_take(dataset, tiny_backbone, capsys):
    """A misspelt --option (or --plugin on a plain engine) is one line, not a TypeError
    and not silently ignored."""
    data, images = dataset
    base = ["--backbone", str(tiny_backbone), "--data", str(data), "--images", str(images)]
    assert main(["eval", "hq-sam", *base, "--option", "hq_tokn_only=1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--option hq_tokn_only: engine hq-sam takes no such option" in err
    assert "hq_token_only" in err                       # the options it does take
    assert main(["eval", "sam", *base, "--plugin", str(tiny_backbone)]) == 2
    assert "--plugin: engine sam takes no such option" in capsys.readouterr().err
