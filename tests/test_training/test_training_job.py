"""TrainingJob against real child processes: a small stand-in trainer (written below,
no torch) that takes `annotator train`'s arguments and writes the same event stream, and
the project export that feeds a run."""
from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time

import numpy as np
import pytest

from annotator.core.training_job import (DONE, FAILED, RUNNING, STOPPED, TrainingDataError,
                                         TrainingJob, clock, default_run_dir, describe_event,
                                         export_project_for_training)

FAKE_TRAINER = textwrap.dedent('''
    """Stands in for `annotator train`: same arguments, same event stream."""
    import argparse, json, os, shutil, signal, sys, time
    p = argparse.ArgumentParser()
    p.add_argument("command"); p.add_argument("engine")
    for name in ("--data", "--images", "--backbone", "--out", "--events", "--val-fraction",
                 "--seed", "--plugin-src", "--cache-dir"):
        p.add_argument(name)
    p.add_argument("--steps", type=int); p.add_argument("--batch-size", type=int)
    p.add_argument("--mode", default="ok"); p.add_argument("--delay", type=float, default=0.0)
    a = p.parse_args()
    events = open(a.events, "a")
    def emit(kind, **f):
        events.write(json.dumps({"event": kind, "time": round(time.time(), 3), **f}) + "\\n")
        events.flush()
    if a.mode == "stubborn":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        emit("start", engine=a.engine, backbone=a.backbone, steps=a.steps,
             batch_size=a.batch_size, world=1, out=a.out)
        if a.mode == "fail":
            emit("error", message="ValueError: no training instances: the dataset is empty")
            sys.exit(1)
        if a.mode == "crash":
            print("Traceback (most recent call last):", file=sys.stderr)
            print("RuntimeError: CUDA out of memory", file=sys.stderr)
            os._exit(3)
        for i in range(2):
            emit("encode", done=i + 1, total=2)
        step = 0
        while a.mode in ("slow", "stubborn") or step < a.steps:
            step += 1
            time.sleep(a.delay)
            emit("step", step=min(step, a.steps), steps=a.steps, loss=1.0 / step, lr=1e-3)
        plugin = os.path.join(a.out, a.engine + "-sam-tiny.safetensors")
        shutil.copyfile(a.plugin_src, plugin + ".part")
        os.replace(plugin + ".part", plugin)
        emit("done", plugin=plugin, metrics={"miou": 0.75}, seconds=0.1)
    except KeyboardInterrupt:
        emit("error", message="interrupted")
        sys.exit(130)
''')


@pytest.fixture
def fake(tmp_path):
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    source = tmp_path / "trained.bin"
    source.write_bytes(b"plugin bytes")

    def make(mode="ok", steps=5, delay=0.0, **kw) -> TrainingJob:
        return TrainingJob("stable-sam", tmp_path / "coco.json", tmp_path / "images",
                           tmp_path / "sam.pth", tmp_path / "run", steps, 2,
                           extra_args=("--mode", mode, "--delay", delay,
                                       "--plugin-src", source),
                           launcher=[sys.executable, str(script)], **kw)
    return make


def run_until_finished(job: TrainingJob, timeout: float = 10.0) -> list[dict]:
    events, deadline = [], time.monotonic() + timeout
    while not job.finished or job.alive:
        assert time.monotonic() < deadline, f"job still {job.state}"
        events += job.poll()
        time.sleep(0.02)
    return events + job.poll()


def test_argv_is_the_train_command_without_a_shell(tmp_path):
    job = TrainingJob("hq-sam", "d.json", "imgs", "b.pth", tmp_path / "r", 7, 3,
                      extra_args=("--lr", 1e-4), python="/py")
    assert job.argv[:4] == ["/py", "-m", "annotator.cli", "train"]
    flags = dict(zip(job.argv[5::2], job.argv[6::2]))
    assert job.argv[4] == "hq-sam"
    assert flags == {"--data": "d.json", "--images": "imgs", "--backbone": "b.pth",
                     "--out": str(tmp_path / "r"), "--steps": "7", "--batch-size": "3",
                     "--events": str(tmp_path / "r" / "events.jsonl"),
                     "--val-fraction": "0.1", "--seed": "0", "--lr": "0.0001"}
    assert job.state == "new" and job.poll() == []


def test_events_are_tailed_and_a_partial_line_waits(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    events = out / "events.jsonl"
    events.write_text(json.dumps({"event": "step", "step": 99}) + "\n")   # an earlier run
    job = TrainingJob("stable-sam", "d", "i", "b", out, 10, 2,
                      launcher=[sys.executable, "-c", "import time; time.sleep(30)"]).start()
    try:
        assert job.poll() == []                      # the earlier run's events are not ours
        with events.open("a") as f:
            f.write(json.dumps({"event": "start", "steps": 10}) + "\n")
            f.write('{"event": "step", "step": 1, "steps": 10, "lo')
            f.flush()
            assert [e["event"] for e in job.poll()] == ["start"]
            assert job.poll() == []                  # still half a line
            f.write('ss": 0.5, "lr": 0.01, "time": 100.0}\n\n')
            f.write("not json\n")
            f.write(json.dumps({"event": "step", "step": 3, "steps": 10, "loss": 0.25,
                                "time": 101.0}) + "\n")
            f.flush()
        got = job.poll()
        assert [(e["event"], e["step"]) for e in got] == [("step", 1), ("step", 3)]
        assert job.progress.loss == 0.25 and job.progress.done == 3
        assert job.progress.eta_s == pytest.approx(7 * 1.0 / 2)   # 2 steps in 1 s, 7 to go
        assert job.state == RUNNING and job.poll() == []
    finally:
        job.stop(wait=5)
    assert job.state == STOPPED and not job.alive


def test_a_run_to_the_end_reports_its_plugin(fake, tmp_path):
    job = fake(steps=5).start()
    assert job.state == RUNNING and job.pid
    events = run_until_finished(job)
    kinds = [e["event"] for e in events]
    assert kinds == ["start", "encode", "encode"] + ["step"] * 5 + ["done"]
    assert job.state == DONE and job.error is None
    assert job.result_plugin == tmp_path / "run" / "stable-sam-sam-tiny.safetensors"
    assert job.result_plugin.read_bytes() == b"plugin bytes"
    p = job.progress
    assert (p.phase, p.done, p.total, p.loss, p.lr) == ("done", 5, 5, 0.2, 1e-3)
    assert p.metrics == {"miou": 0.75} and p.elapsed_s > 0


def test_an_error_event_fails_the_job_with_its_message(fake):
    job = fake(mode="fail").start()
    run_until_finished(job)
    assert job.state == FAILED
    assert job.error == "ValueError: no training instances: the dataset is empty"
    assert job.result_plugin is None


def test_a_crash_without_an_error_event_reports_stderr(fake):
    job = fake(mode="crash").start()
    run_until_finished(job)
    assert job.state == FAILED
    assert "status 3" in job.error and "RuntimeError: CUDA out of memory" in job.error


def test_a_program_that_cannot_start_is_an_oserror(tmp_path):
    job = TrainingJob("stable-sam", "d", "i", "b", tmp_path / "r", 1, 1,
                      launcher=[str(tmp_path / "no-such-program")])
    with pytest.raises(OSError):
        job.start()


def test_stop_interrupts_the_trainer_without_blocking(fake, tmp_path):
    job = fake(mode="slow", steps=1000, delay=0.02).start()
    deadline = time.monotonic() + 10
    while job.progress.done < 3:
        assert time.monotonic() < deadline
        job.poll()
        time.sleep(0.02)
    t0 = time.monotonic()
    job.stop()
    assert time.monotonic() - t0 < 0.2            # the GUI thread never waits here
    events = run_until_finished(job)
    assert job.state == STOPPED and job.error == "interrupted"
    assert events[-1]["event"] == "error"
    assert not list((tmp_path / "run").glob("*.safetensors*"))   # no plugin, not even half


@pytest.mark.skipif(os.name != "posix", reason="SIGINT is what is being ignored")
def test_a_trainer_that_ignores_stop_is_killed_after_the_timeout(fake):
    job = fake(mode="stubborn", steps=1000, delay=0.02, stop_timeout=0.3).start()
    deadline = time.monotonic() + 10
    while job.progress.done < 2:
        assert time.monotonic() < deadline
        job.poll()
        time.sleep(0.02)
    job.stop()
    time.sleep(0.2)
    job.poll()
    assert job.alive and job.state == RUNNING     # still stepping: SIGINT was ignored
    run_until_finished(job)
    assert job.state == STOPPED and job._proc.returncode == -signal.SIGKILL


def test_log_lines_for_people():
    steps = [describe_event({"event": "step", "step": i, "steps": 1000, "loss": 0.5, "lr": 1e-4})
             for i in range(1, 1001)]
    kept = [line for line in steps if line]
    assert len(kept) == 100 + 1 and kept[0] == "step 1 / 1000  loss 0.5000  lr 1.00e-04"
    assert describe_event({"event": "encode", "done": 3, "total": 9}) is None
    assert describe_event({"event": "encode", "done": 9, "total": 9}) == \
        "caching features: 9 / 9 images"
    assert describe_event({"event": "error", "time": 1.0, "message": "boom"}) == \
        "error: message boom"
    assert describe_event({"event": "other"}) is None
    assert (clock(62.4), clock(3723)) == ("1:02", "1:02:03")


def test_run_dirs_are_fresh_under_the_plugins_folder(tmp_path):
    first = default_run_dir(tmp_path, "hq-sam")
    assert first.parent == tmp_path / "plugins" / "hq-sam"
    first.mkdir(parents=True)
    assert default_run_dir(tmp_path, "hq-sam") != first


def _project_with_one_mask(tmp_path):
    from PIL import Image

    from annotator.core.store import Project
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(images / "a.png")
    project = Project.create(tmp_path / "p.sqlite", images)
    project.scan_folder()
    return project


def test_export_writes_coco_with_prompts(tmp_path):
    project = _project_with_one_mask(tmp_path)
    with pytest.raises(TrainingDataError, match="no accepted masks"):
        export_project_for_training(project, tmp_path / "empty")
    cat = project.add_category("cup")
    mask = np.zeros((20, 30), bool)
    mask[5:15, 10:20] = True
    image_id = project.images()[0].id
    prompts = [{"kind": "box", "box": [10, 5, 20, 15]}]
    project.add_annotation(image_id, cat.id, mask,
                           engine="sam", prompts=prompts)
    data, images = export_project_for_training(project, tmp_path / "export")
    assert images == tmp_path / "images"
    doc = json.loads(data.read_text())
    assert [i["file_name"] for i in doc["images"]] == ["a.png"]
    (ann,) = doc["annotations"]
    assert ann["prompts"] == prompts and ann["area"] == 100 and ann["engine"] == "sam"
    path = project.path
    project.close()
    again, _ = export_project_for_training(path, tmp_path / "by-path")   # its own connection
    assert json.loads(again.read_text())["annotations"] == doc["annotations"]


@pytest.mark.slow   # a real `annotator train` process: torch import + a tiny run, ~5 s
def test_the_real_trainer_runs_under_a_job(tmp_path):
    """`annotator train stable-sam` on a tiny SAM, four labelled images: the events the
    real trainer writes drive the job to its plugin, which the plugin index then lists."""
    import torch

    from engines.files.checkpoints import checkpoint_identity
    from engines.files.plugin_index import find_plugins
    from engines.hosts.tiny import tiny_sam
    project = _project_with_one_mask(tmp_path)
    cat = project.add_category("obj")
    for i in range(3):
        project.add_annotation(project.images()[0].id, cat.id,
                               np.pad(np.ones((8, 8), bool),
                                      ((3 + i, 9 - i), (4 + 3 * i, 18 - 3 * i))))
    data, images = export_project_for_training(project, tmp_path / "export")
    backbone = tmp_path / "models" / "tiny_sam.pth"
    backbone.parent.mkdir()
    torch.save(tiny_sam().state_dict(), backbone)
    out = default_run_dir(tmp_path / "models", "stable-sam")
    job = TrainingJob("stable-sam", data, images, backbone, out, 2, 2,
                      extra_args=("--cache-dir", tmp_path / "features", "--val-fraction", "0"),
                      env={"OMP_NUM_THREADS": "1"}).start()
    events = run_until_finished(job, timeout=60)
    assert job.state == DONE, job.error or job.log_tail()
    assert [e["event"] for e in events if e["event"] == "step"] == ["step", "step"]
    assert job.progress.done == 2 and job.progress.loss is not None
    (found,) = find_plugins(tmp_path / "models", "stable-sam")
    assert found.path == job.result_plugin and job.result_plugin.parent == out
    assert found.backbone_checkpoint == checkpoint_identity(backbone)
