"""EvalJob against real child processes: a stand-in for `annotator eval` (written below, no
torch) that takes its arguments, prints its progress lines and writes its JSON; bad input
refused before anything starts; the held-out images are the trainer's."""
from __future__ import annotations

import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

from annotator.core import geometry
from annotator.core.dataset import AnnotationRecord, CategoryRecord, Dataset, ImageRecord
from annotator.core.eval_job import (DONE, FAILED, STOPPED, EvalInputError, EvalJob, compare,
                                     held_out)
from annotator.core.formats import coco

FAKE_EVAL = textwrap.dedent('''
    """Stands in for `annotator eval`: same arguments, its stderr lines and --json file."""
    import argparse, json, sys, time
    p = argparse.ArgumentParser()
    p.add_argument("command"); p.add_argument("engine")
    for name in ("--data", "--images", "--backbone", "--plugin", "--protocol", "--split",
                 "--val-fraction", "--seed", "--json", "--mode"):
        p.add_argument(name)
    p.add_argument("--prompts", type=int)
    a = p.parse_args()
    if a.mode == "bad":
        print("Traceback (most recent call last):", file=sys.stderr)
        print("annotator eval: error: the val split is empty", file=sys.stderr)
        sys.exit(2)
    print(f"evaluating {a.engine}, sam on 3 instances, {a.prompts} prompts each", file=sys.stderr)
    for i in range(3):
        time.sleep(0.05 if a.mode != "slow" else 1.0)
        print(f"[{i + 1}/3]", file=sys.stderr, flush=True)
    cell = lambda m: {"miou": m, "mbiou": m / 2, "st": float("nan"), "n": 3}
    results = {"sam": {"tight-box": cell(40.0)},
               a.engine: {"tight-box": {**cell(55.0), "paired": {"diff": 15.0, "lo": 9.5, "hi": 20.0},
                                        "objects": [1, 2, 3]}}}
    open(a.json, "w").write(json.dumps(results))
''')


@pytest.fixture
def inputs(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("data.json", "plugin.safetensors", "sam.pth"):
        (tmp_path / name).write_text("{}")
    script = tmp_path / "fake_eval.py"
    script.write_text(FAKE_EVAL)

    def make(mode="ok", **changes) -> EvalJob:
        kw = dict(data_json=tmp_path / "data.json", images_dir=tmp_path / "images",
                  backbone=tmp_path / "sam.pth", plugin=tmp_path / "plugin.safetensors",
                  out_dir=tmp_path / "run")
        kw.update(changes)
        return EvalJob("stable-sam", **kw, prompts=2,
                       launcher=[sys.executable, str(script), "--mode", mode])
    return make


def run(job: EvalJob, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not job.finished or job.alive:
        assert time.monotonic() < deadline, f"job still {job.state}"
        job.poll()
        time.sleep(0.02)


def test_bad_input_is_one_line_and_writes_nothing(inputs, tmp_path):
    for change, named in ((dict(data_json=tmp_path / "gone.json"), "gone.json: no COCO export"),
                          (dict(plugin=tmp_path / "gone.safetensors"),
                           "gone.safetensors: no plugin file"),
                          (dict(images_dir=tmp_path / "nowhere"), "nowhere: no images folder")):
        job = inputs(**change)
        with pytest.raises(EvalInputError) as info:
            job.start()
        message = str(info.value)
        assert named in message and "\n" not in message
        assert job.state == "new" and not job.alive
        assert not (tmp_path / "run").exists()
    with pytest.raises(EvalInputError, match="engine 'sam': File ▸ Evaluate… scores hq-sam"):
        EvalJob("sam", *(tmp_path / n for n in ("data.json", "images", "sam.pth",
                                                "plugin.safetensors", "run"))).start()
    assert not (tmp_path / "run").exists()


def test_a_run_reports_progress_and_its_numbers(inputs, tmp_path):
    job = inputs()
    argv = job.argv
    assert argv[argv.index("--split") + 1] == "val"
    assert (argv[argv.index("--val-fraction") + 1], argv[argv.index("--seed") + 1]) == ("0.1", "0")
    job.start()
    run(job)
    assert job.state == DONE and job.error is None
    assert (job.progress.done, job.progress.total, job.progress.phase) == (3, 3, "done")
    host, rows = compare(job.results, "stable-sam")
    assert host == "sam" and [r.protocol for r in rows] == ["tight-box"]
    row = rows[0]
    assert (row.host["miou"], row.plugin["miou"], row.plugin["mbiou"]) == (40.0, 55.0, 27.5)
    assert row.plugin["st"] is None                         # NaN in the JSON: not measured
    assert row.paired == {"diff": 15.0, "lo": 9.5, "hi": 20.0}


def test_a_failure_is_the_last_line_it_printed(inputs):
    job = inputs("bad").start()
    run(job)
    assert job.state == FAILED and job.results is None
    assert job.error == "annotator eval: error: the val split is empty"


def test_stop_ends_the_run_without_numbers(inputs):
    job = inputs("slow").start()
    deadline = time.monotonic() + 20
    while job.progress.phase != "evaluating":
        assert time.monotonic() < deadline
        job.poll()
        time.sleep(0.02)
    job.stop()
    run(job)
    assert job.state == STOPPED and job.results is None and not job.json_path.exists()


def test_held_out_images_are_the_trainers(tmp_path):
    """Groups keep their images together; the same images as training.data's split."""
    from training.data import CocoInstances, split_by_group
    groups = ["a", "a", "b", "", "", "c", "c", "", "d", ""]
    images, annotations = [], []
    for i, group in enumerate(groups, start=1):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / f"{i}.png")
        images.append(ImageRecord(i, f"{i}.png", 8, 8, group=group))
        mask = np.zeros((8, 8), bool)
        mask[2:5, 2:6] = True
        annotations.append(AnnotationRecord(i, i, 1, geometry.mask_to_rle(mask)))
    data = tmp_path / "coco.json"
    coco.write(Dataset(images, [CategoryRecord(1, "thing")], annotations), data, tmp_path)
    for held in ((0.1, 0), (0.3, 1), (0.5, 7)):
        _, val = split_by_group(CocoInstances.load(data, tmp_path), *held)
        got = held_out(data, held)
        assert got.images == sorted(img.file_name for img in val.images) and got.images
        assert got.objects == len(val.instances) and got.of_images == len(groups)
