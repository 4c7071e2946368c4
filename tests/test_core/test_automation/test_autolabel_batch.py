"""Batch auto-labelling on a real tiny SAM 2 proposer: the summary, resume and
idempotence, a failing image in the middle, cancel, a run killed with SIGKILL, and a
torchrun run with 2 gloo ranks giving exactly the candidates of one process."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from autolabel_helpers import candidate_set, make_project, tiny_proposer

from annotator.core.automation.autolabel import AutolabelOptions, run_autolabel
from annotator.core.automation.candidates import CandidateOptions
from annotator.core.store import Project

DRIVER = Path(__file__).with_name("autolabel_driver.py")


@pytest.fixture(scope="module")
def proposer():
    return tiny_proposer()


def test_a_run_then_a_rerun_adds_nothing(tmp_path, proposer):
    with Project.open(make_project(tmp_path, n=3)) as p:
        first = run_autolabel(p, proposer, AutolabelOptions())
        made = candidate_set(p)
        again = run_autolabel(p, proposer, AutolabelOptions())
        assert (first.done, first.images, sum(first.added.values())) == (3, 3, len(made))
        assert len(made) >= 6 and first.failed == []
        assert (again.done, again.skipped_done, sum(again.added.values())) == (0, 3, 0)
        assert candidate_set(p) == made and p.annotations() == []
        other = run_autolabel(p, proposer, AutolabelOptions(candidate=CandidateOptions(0.5)))
        assert other.done == 3                  # new settings: a new run, but no duplicate
        assert sum(other.added.values()) == 0 and other.duplicates + other.below_threshold > 0


def test_selection_only_unannotated_and_glob(tmp_path, proposer):
    with Project.open(make_project(tmp_path, n=3)) as p:
        cat = p.add_category("cat")
        p.add_annotation(1, cat.id, [[True] * 64] * 48)
        s = run_autolabel(p, proposer, AutolabelOptions(only_unannotated=True, images="img[01]*"))
        assert (s.images, s.skipped_annotated, s.done) == (2, 1, 1)
        assert set(p.pending_counts()) == {2}


def test_an_unreadable_image_is_reported_and_the_run_goes_on(tmp_path, proposer):
    path = make_project(tmp_path, n=3)
    (tmp_path / "images" / "img1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    progress = []
    with Project.open(path) as p:
        s = run_autolabel(p, proposer, AutolabelOptions(), progress=progress.append)
        assert s.done == 2 and [name for name, _ in s.failed] == ["img1.png"]
        assert "img1.png" in s.failed[0][1] and any("failed: img1.png" in x for x in s.lines())
        assert [i.done for i in progress] == [1, 2, 3] and progress[-1].eta_s == 0
        assert set(p.pending_counts()) == {1, 3}
        runs = {r.image_id: r.outcome for r in p.proposal_runs()}
        assert runs == {1: "done", 2: "failed", 3: "done"}
        again = run_autolabel(p, proposer, AutolabelOptions())     # failed ones are retried
        assert again.skipped_done == 2 and len(again.failed) == 1


def test_cancel_stops_between_images_and_a_rerun_finishes(tmp_path, proposer):
    with Project.open(make_project(tmp_path, n=3)) as p:
        seen = []
        s = run_autolabel(p, proposer, AutolabelOptions(), progress=seen.append,
                          cancel=lambda: len(seen) >= 1)
        assert s.cancelled and s.done == 1 and any("cancelled" in x for x in s.lines())
        rest = run_autolabel(p, proposer, AutolabelOptions())
        assert (rest.skipped_done, rest.done) == (1, 2)


def _driver(project: Path, *args: str, sleep: str = "0") -> list[str]:
    return [sys.executable, str(DRIVER), str(project), sleep, *args]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def test_sigkill_mid_run_then_rerun_loses_nothing_and_duplicates_nothing(tmp_path):
    path = make_project(tmp_path, n=6)
    reference = tmp_path / "reference.annot"
    shutil.copy(path, reference)
    subprocess.run(_driver(reference), check=True, env=_env(), capture_output=True, timeout=300)
    proc = subprocess.Popen(_driver(path, sleep="0.4"), stdout=subprocess.PIPE, text=True,
                            env=_env())
    stored = []
    for line in proc.stdout:
        if line.startswith("stored"):
            stored.append(line)
        if len(stored) == 2:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    with Project.open(path, take_over=True) as p:      # the dead run's lock is stale
        assert p.integrity_problems() == []
        done = [r for r in p.proposal_runs() if r.outcome == "done"]
        assert 2 <= len(done) < 6
    out = subprocess.run(_driver(path), check=True, env=_env(), capture_output=True,
                         text=True, timeout=300).stdout
    assert f"summary {6 - len(done)}" in out
    with Project.open(path) as p, Project.open(reference, read_only=True) as ref:
        assert p.integrity_problems() == []
        assert candidate_set(p) == candidate_set(ref) and len(candidate_set(p)) > 6
        assert len(p.proposal_runs()) == 6


def test_torchrun_two_ranks_make_exactly_the_single_process_candidates(tmp_path):
    path = make_project(tmp_path, n=5)
    single = tmp_path / "single.annot"
    shutil.copy(path, single)
    subprocess.run(_driver(single), check=True, env=_env(), capture_output=True, timeout=300)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", str(DRIVER), str(path), "0"]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "summary 5" in done.stdout
    with Project.open(path) as p, Project.open(single, read_only=True) as ref:
        assert candidate_set(p) == candidate_set(ref) and len(candidate_set(p)) >= 10
        assert p.integrity_problems() == []
