"""training/plots.py and scripts/plot_experiments.py: figures from small hand-made event
and eval files, example masks from tiny trained models, and bad input as one line."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from training.plots import PlotInputError, paired_rows, read_eval, read_run

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n"


def _script():
    spec = importlib.util.spec_from_file_location("plot_experiments", ROOT / "scripts" / "plot_experiments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


plot_main = _script()


def _events(path: Path, steps: int = 12, resumed_from: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [{"event": "start", "steps": steps}]
    lines += [{"event": "step", "step": s, "steps": steps, "loss": 1.0 / s} for s in range(1, steps + 1)]
    lines.insert(6, {"event": "validate", "step": 5, "metrics": {"loss": 0.3, "tight-box/miou": 0.5}})
    if resumed_from:   # a resumed run appends: steps from resumed_from on are seen twice
        lines += [{"event": "step", "step": s, "steps": steps, "loss": 0.5 / s}
                  for s in range(resumed_from, steps + 1)]
    lines.append({"event": "done", "metrics": {"loss": 0.2, "tight-box/miou": 0.7, "best_step": 5}})
    path.write_text("\n".join(json.dumps(e) for e in lines) + '\n{"event": "step", "st')
    return path


def _eval(path: Path, plugin: str = "hq-sam") -> Path:
    results = {plugin: {}, "sam": {}}
    for proto, (h, p) in {"noisy-box": (60.0, 66.0), "tight-box": (80.0, 79.0)}.items():
        results["sam"][proto] = {"miou": h, "mbiou": h / 2, "st": float("nan"), "n": 3, "per_object": []}
        results[plugin][proto] = {"miou": p, "mbiou": p / 2, "st": float("nan"), "n": 3, "per_object": [],
                                  "paired": {"diff": p - h, "lo": p - h - 2, "hi": p - h + 2, "n": 3,
                                             "host": "sam"}}
    path.write_text(json.dumps(results))
    return path


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG


def test_read_run_takes_a_folder_or_file_and_keeps_a_resumed_steps_last_value(tmp_path):
    _events(tmp_path / "hq-sam" / "events.jsonl", resumed_from=10)
    run = read_run(tmp_path / "hq-sam")
    assert run["name"] == "hq-sam" and run["steps"] == list(range(1, 13))
    assert run["loss"][8] == pytest.approx(1 / 9) and run["loss"][9] == pytest.approx(0.05)
    assert run["val"]["tight-box/miou"] == ([5, 12], [0.5, 0.7])   # done: after the last step
    assert "best_step" not in run["val"]
    assert read_run(tmp_path / "hq-sam" / "events.jsonl")["steps"] == run["steps"]


def test_learning_curves_and_bars_are_written(tmp_path, capsys):
    a = _events(tmp_path / "runs" / "hq-sam" / "events.jsonl").parent
    b = _events(tmp_path / "runs" / "stable.jsonl", steps=30)
    evals = [_eval(tmp_path / "eval-hq.json"), _eval(tmp_path / "eval-st.json", "stable-sam")]
    out = tmp_path / "figures"
    assert plot_main(["--out", str(out), "--curves", str(a), str(b),
                      "--evals", *map(str, evals)]) == 0
    assert _is_png(out / "learning_curves.png") and _is_png(out / "host_vs_plugin.png")
    printed = capsys.readouterr().out
    assert "learning_curves.png" in printed and "host_vs_plugin.png" in printed


def test_paired_rows_pair_each_plugin_protocol_with_its_host(tmp_path):
    rows = paired_rows(read_eval(_eval(tmp_path / "e.json")))
    assert [(r["plugin"], r["host"], r["protocol"]) for r in rows] == \
        [("hq-sam", "sam", "noisy-box"), ("hq-sam", "sam", "tight-box")]
    assert rows[0]["host_miou"] == 60.0 and rows[0]["plugin_miou"] == 66.0
    assert (rows[0]["diff"], rows[0]["lo"], rows[0]["hi"]) == (6.0, 4.0, 8.0)
    assert paired_rows([1, 2]) == [] and paired_rows({"x": {"y": {"paired": {}}}}) == []


@pytest.mark.parametrize("case, message", [
    ("missing-eval", "no such file"),
    ("garbled-eval", "not JSON"),
    ("unpaired-eval", "no host vs plugin comparison"),
    ("missing-run", "no such file or folder"),
    ("empty-run-folder", "no events file"),
    ("garbled-run", "no training steps"),
    ("binary-run", "not a readable events file"),
    ("nothing", "nothing to plot"),
    ("examples-without-backbone", "--examples needs --backbone"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case, message):
    bad = tmp_path / "bad"
    args = {"missing-eval": ["--evals", str(tmp_path / "nope.json")],
            "garbled-eval": ["--evals", str(bad)],
            "unpaired-eval": ["--evals", str(bad)],
            "missing-run": ["--curves", str(tmp_path / "nope")],
            "empty-run-folder": ["--curves", str(tmp_path)],
            "garbled-run": ["--curves", str(bad)],
            "binary-run": ["--curves", str(bad)],
            "nothing": [],
            "examples-without-backbone": ["--examples", str(bad), "--plugin", "p"]}[case]
    bad.write_bytes({"garbled-eval": b'{"hq-sam": {', "unpaired-eval": b'{"sam": {"tight-box": {"miou": 1}}}',
                     "garbled-run": b"not json\n{also not}\n", "binary-run": b"\xff\xfe\x00\x81" * 50
                     }.get(case, b"{}"))
    out = tmp_path / "figures"
    assert plot_main(["--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]
    assert not out.exists()                                    # nothing written


def test_read_eval_raises_plot_input_error(tmp_path):
    with pytest.raises(PlotInputError, match="nope.json: no such file"):
        read_eval(tmp_path / "nope.json")


# -------------------------------------------------------------- examples, tiny models
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from annotator.cli import main
    from training.synthetic import generate
    root = tmp_path_factory.mktemp("plots")
    data, images = generate(root / "synth", n_images=3, size=64, seed=4), root / "synth" / "images"
    base = ["--data", str(data), "--images", str(images), "--steps", "1", "--batch-size", "2",
            "--points", "256"]
    assert main(["train", "sam", "--backbone", "scratch:micro", *base, "--out", str(root / "sam")]) == 0
    (backbone,) = (root / "sam").glob("*.pth")
    assert main(["train", "hq-sam", "--backbone", str(backbone), *base, "--out", str(root / "hq")]) == 0
    (plugin,) = (root / "hq").glob("*.safetensors")
    result = root / "eval.json"
    assert main(["eval", "hq-sam", "--backbone", str(backbone), "--plugin", str(plugin), "--data",
                 str(data), "--images", str(images), "--protocol", "tight-box,noisy-box",
                 "--prompts", "1", "--split", "all", "--bootstrap", "50", "--json", str(result)]) == 0
    return {"backbone": backbone, "plugin": plugin, "data": data, "images": images, "eval": result}


def _example_args(t, out, *extra):
    return ["--out", str(out), "--examples", str(t["eval"]), "--backbone", str(t["backbone"]),
            "--plugin", str(t["plugin"]), "--data", str(t["data"]), "--images", str(t["images"]),
            "--split", "all", *extra]


def test_example_masks_show_host_and_plugin_on_the_evals_prompt(trained, tmp_path, monkeypatch):
    from training import plots
    seen, real = {}, plots.example_masks

    def spy(examples, out, title=""):
        seen["examples"] = examples
        return real(examples, out, title)
    monkeypatch.setattr(plots, "example_masks", spy)
    out = tmp_path / "figures"
    assert plot_main(_example_args(trained, out, "--protocol", "noisy-box", "--count", "3")) == 0
    assert _is_png(out / "examples_hq-sam_noisy-box.png")
    examples = seen["examples"]
    assert len(examples) == 3 and all(list(e["masks"]) == ["sam", "hq-sam"] for e in examples)
    rows = {e: {o["object"]: o["miou"] for o in r["noisy-box"]["per_object"]}
            for e, r in json.loads(trained["eval"].read_text()).items()}
    gaps = {o: rows["hq-sam"][o] - rows["sam"][o] for o in rows["sam"]}
    # spread over the ranking of plugin - host: the worst first, the best last
    assert gaps[examples[0]["object"]] == min(gaps.values())
    assert gaps[examples[-1]["object"]] == max(gaps.values())
    # the eval drew one noisy box per object (--prompts 1): the example is on that very
    # box, so both engines score exactly what the eval stored
    for e in examples:
        assert e["prompt"].box is not None and e["gt"].shape == e["image"].shape[:2]
        for engine in ("sam", "hq-sam"):
            assert e["iou"][engine] == pytest.approx(rows[engine][e["object"]], abs=1e-6)


def test_examples_refuse_objects_not_in_the_data_and_an_absent_protocol(trained, tmp_path, capsys):
    out = tmp_path / "figures"
    results = json.loads(trained["eval"].read_text())
    for engine in results.values():
        for o in engine["noisy-box"]["per_object"]:
            o["object"] = "image 999 (variant 0) annotation 1"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(results))
    args = _example_args(trained, out)
    args[args.index("--examples") + 1] = str(other)
    assert plot_main(args) == 2
    err = capsys.readouterr().err
    assert "image 999" in err and "--split" in err
    assert plot_main(_example_args(trained, out, "--protocol", "1-point")) == 2
    assert "no host vs plugin comparison under 1-point" in capsys.readouterr().err
    assert not out.exists()
