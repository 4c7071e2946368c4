"""One writer per project (issue 19, item 4): the lock file, read-only opening, take
over, the command line's "in use", and undo/redo that refuse to revert someone else's
edit."""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.cli import main
from annotator.core import commands as cmd
from annotator.core.errors import ProjectError
from annotator.core.project_lock import (LockLostError, ProjectInUseError, current_holder,
                                         lock_path)
from annotator.core.store import Project

H, W = 32, 40


@pytest.fixture()
def project_file(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (W, H)).save(root / "a.png")
    path = tmp_path / "p.sqlite"
    with Project.create(path, root) as p:
        p.add_images(["a.png"])
        p.add_category("thing")
    return path


def mask(x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[4:20, x0:x1] = True
    return m


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_lock_file_names_the_writer_and_goes_when_it_closes(project_file):
    with Project.open(project_file) as p:
        doc = json.loads(lock_path(project_file).read_text())
        assert doc["pid"] == os.getpid() and doc["host"] == socket.gethostname()
        assert doc["since"] > 0 and doc["token"]
        assert current_holder(project_file).pid == os.getpid()
        assert not p.read_only
    assert not lock_path(project_file).exists()
    assert current_holder(project_file) is None


def test_a_second_writer_is_refused_and_told_who_has_it(project_file):
    with Project.open(project_file):
        with pytest.raises(ProjectInUseError, match=rf"in use by process {os.getpid()} on "):
            Project.open(project_file)
    Project.open(project_file).close()          # free again once the first one closed


HOLDER = """
import sys
from annotator.core.store import Project
with Project.open(sys.argv[1]):
    print("HOLDING", flush=True)
    sys.stdin.readline()
"""


def test_another_process_holds_it_until_it_is_gone(project_file):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(project_file)], env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "HOLDING"
        with pytest.raises(ProjectInUseError, match=rf"process {child.pid} on "):
            Project.open(project_file)
    finally:
        child.kill()                       # dies holding it: the lock file stays behind
        child.wait()
        child.stdin.close()
        child.stdout.close()
    assert lock_path(project_file).exists() and current_holder(project_file) is None
    Project.open(project_file).close()


@pytest.mark.parametrize("content", [
    None,                                        # a lock left by a process that is gone
    "",                                          # cut short by a crash
    "not json",
])
def test_a_stale_lock_is_taken_without_asking(project_file, content):
    stale = {"pid": dead_pid(), "host": socket.gethostname(), "since": 1.0, "token": "old"}
    lock_path(project_file).write_text(json.dumps(stale) if content is None else content)
    with Project.open(project_file) as p:
        p.add_category("taken")
        assert json.loads(lock_path(project_file).read_text())["pid"] == os.getpid()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_lock_whose_pid_now_belongs_to_another_process_is_stale(project_file):
    # our own parent is alive, but it started long before the lock's "started" says
    reused = {"pid": os.getppid(), "host": socket.gethostname(), "since": 1.0,
              "token": "old", "started": "1"}
    lock_path(project_file).write_text(json.dumps(reused))
    Project.open(project_file).close()


def test_a_lock_from_another_host_holds(project_file):
    other = {"pid": 1, "host": "elsewhere.example", "since": 1.0, "token": "t"}
    lock_path(project_file).write_text(json.dumps(other))
    with pytest.raises(ProjectInUseError, match="elsewhere.example"):
        Project.open(project_file)


def test_read_only_needs_no_lock_and_refuses_every_change(project_file):
    with Project.open(project_file) as writer:
        with Project.open(project_file, read_only=True) as reader:
            assert reader.read_only and len(reader.images()) == 1
            with pytest.raises(ProjectError, match="read-only"):
                reader.add_category("nope")
            with pytest.raises(ProjectError, match="read-only"):
                cmd.CommandStack(reader).push(cmd.AddCategory("nope"))
        writer.add_category("still mine")
        assert [c.name for c in writer.categories()] == ["thing", "still mine"]


def test_take_over_refuses_the_old_writers_next_change_and_keeps_its_saved_work(project_file):
    first = Project.open(project_file)
    saved = first.add_annotation(1, 1, mask(2, 10)).id
    second = Project.open(project_file, take_over=True)
    with pytest.raises(LockLostError, match="taken over by process"):
        first.add_annotation(1, 1, mask(12, 20))
    with pytest.raises(LockLostError):
        first.update_mask(saved, mask(3, 9))
    assert [a.id for a in second.annotations()] == [saved]     # nothing lost, nothing added
    second.add_annotation(1, 1, mask(22, 30))
    first.close()                          # does not remove the new writer's lock
    assert current_holder(project_file).token == second._lock.holder.token
    second.close()
    assert not lock_path(project_file).exists()


def test_cli_import_into_a_project_in_use_exits_2_and_changes_nothing(project_file, capsys,
                                                                      tmp_path):
    from annotator.core.formats import coco
    with Project.open(project_file) as p:
        p.add_annotation(1, 1, mask(2, 10))
        ds = p.export_dataset()
    coco.write(ds, tmp_path / "in.json")
    before = project_file.read_bytes()
    with Project.open(project_file):
        code = main(["import", "coco", str(tmp_path / "in.json"), "--project",
                     str(project_file)])
        err = capsys.readouterr().err
        assert code == 2 and "in use by process" in err and str(project_file) in err
        assert len(err.strip().splitlines()) == 1
        # readers still work while the window has it
        assert main(["stats", "--project", str(project_file)]) == 0
    assert project_file.read_bytes() == before


def _change_behind_the_stack(path: Path, sql: str, *args) -> None:
    """Another process writing without the lock (an older version, another host)."""
    conn = sqlite3.connect(path)
    conn.execute(sql, args)
    conn.commit()
    conn.close()


def test_undo_refuses_to_revert_an_edit_made_since_elsewhere(project_file):
    with Project.open(project_file) as p:
        stack = cmd.CommandStack(p)
        added = stack.push(cmd.AddAnnotation(1, 1, mask(2, 10))).annotation_id
        stack.push(cmd.EditMask(added, mask(2, 14)))
        _change_behind_the_stack(project_file, "UPDATE annotations SET engine = 'other', "
                                 "updated = updated + 1 WHERE id = ?", added)
        theirs = p.annotation(added)
        with pytest.raises(cmd.StaleCommandError, match=rf"annotation {added} was changed"):
            stack.undo()
        assert p.annotation(added) == theirs            # their edit stands, untouched
        assert stack.undo_text == "Add annotation"      # the stale step left the history
        with pytest.raises(cmd.StaleCommandError):       # and so does this one
            stack.undo()
        assert p.annotation(added).engine == "other"


def test_redo_refuses_to_resurrect_what_was_deleted_elsewhere(project_file):
    with Project.open(project_file) as p:
        stack = cmd.CommandStack(p)
        keep = stack.push(cmd.AddAnnotation(1, 1, mask(2, 10))).annotation_id
        stack.push(cmd.EditMask(keep, mask(2, 14)))
        stack.undo()                                   # back to the first mask
        _change_behind_the_stack(project_file, "DELETE FROM annotations WHERE id = ?", keep)
        with pytest.raises(cmd.StaleCommandError, match=rf"annotation {keep} was deleted"):
            stack.redo()
        assert p.annotations() == [] and not stack.can_redo


def test_undo_and_redo_still_work_when_nothing_changed_elsewhere(project_file):
    with Project.open(project_file) as p:
        stack = cmd.CommandStack(p)
        ident = stack.push(cmd.AddAnnotation(1, 1, mask(2, 10))).annotation_id
        stack.push(cmd.EditMask(ident, mask(2, 14)))
        stack.undo()
        stack.undo()
        assert p.annotations() == []
        stack.redo()
        stack.redo()
        assert p.annotation(ident).rle == p.annotations()[0].rle
