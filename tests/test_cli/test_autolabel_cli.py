"""`annotator autolabel` as a user meets it: a run with a tiny proposer, its summary and
exit status, and every bad input as one line with exit status 2 and nothing changed."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from autolabel_helpers import make_project, tiny_resolver

from annotator.cli import main
from annotator.core.store import Project

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def project(tmp_path, monkeypatch):
    resolve = tiny_resolver()
    monkeypatch.setattr("engines.router.Router.route",
                        lambda self, task, fine_edges=False, engine=None: resolve(task, engine))
    monkeypatch.setenv("ANNOTATOR_CACHE_DIR", str(tmp_path / "cache"))
    return make_project(tmp_path, n=3)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_run_prints_the_summary_and_a_rerun_skips(project, capsys):
    assert main(["autolabel", "--project", str(project), "--option", "points_per_side=4"]) == 0
    out = capsys.readouterr()
    assert "sam2-amg: 3 image(s) labelled" in out.out and "[3/3] img2.png" in out.err
    with Project.open(project, read_only=True) as p:
        assert sum(p.pending_counts().values()) > 0 and p.annotations() == []
    assert main(["autolabel", "--project", str(project), "--option", "points_per_side=4",
                 "--class-map", "tabby=cat"]) == 0
    assert "3 already done with these settings" in capsys.readouterr().out
    with Project.open(project, read_only=True) as p:
        assert p.class_map() == {"tabby": "cat"}


@pytest.mark.parametrize("args, message", [
    (["--engine", "sam-amgg"], "--engine 'sam-amgg': not an engine for auto requests; choose one of"),
    (["--text", " , "], "--text ' , ': give at least one class name"),
    (["--threshold", "1.5"], "threshold 1.5 is not a number in [0, 1]"),
    (["--threshold", "nan"], "threshold nan is not a number in [0, 1]"),
    (["--iou", "-1"], "suppress iou -1.0 is not a number in [0, 1]"),
    (["--min-area", "-3"], "minimum area -3 is not a whole number"),
    (["--images", ""], "--images: the pattern is empty"),
    (["--option", "points_per_side"], "--option 'points_per_side' is not KEY=VALUE"),
    (["--option", "pointz=4"], "unknown option(s) pointz"),
    (["--class-map", "tabby"], "--class-map: class mapping 'tabby' is not NAME=CATEGORY"),
    (["--class-map", ","], "--class-map: give at least one NAME=CLASS pair"),
])
def test_bad_input_is_one_line_and_changes_nothing(project, capsys, args, message):
    before = digest(project)
    assert main(["autolabel", "--project", str(project), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("annotator autolabel: error:") and message in err, err
    assert "\n" not in err and digest(project) == before


def test_a_missing_project_is_named(tmp_path, capsys):
    assert main(["autolabel", "--project", str(tmp_path / "nope.annot")]) == 2
    assert "nope.annot: no such project file" in capsys.readouterr().err


def test_a_second_run_on_a_busy_project_says_so(project):
    with Project.open(project):            # a window (or a first run) holds the project
        done = subprocess.run([sys.executable, "-m", "annotator.cli", "autolabel",
                               "--project", str(project)], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
    assert done.returncode == 2
    assert "the project is in use by" in done.stderr and done.stderr.count("\n") == 1


def test_under_torchrun_a_bad_project_stops_every_rank(tmp_path):
    """Rank 0's problem reaches the other rank: both exit 2 instead of one waiting forever."""
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", "-m", "annotator.cli", "autolabel",
                           "--project", str(tmp_path / "nope.annot")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.count("nope.annot: no such project file") == 2, done.stderr[-2000:]
