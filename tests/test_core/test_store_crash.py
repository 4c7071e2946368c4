"""A writer process killed with SIGKILL at random moments loses no accepted edit.

The child opens the project and edits in a loop, printing "ACK n" only after edit n's
method returned (= committed). The parent kills it after a random number of ACKs or
at a random time (during start-up, opening, or mid-edit), reopens the file and checks:
integrity_check is ok, the file opens as a project, and every ACKed edit is there.
Edits alternate: even n adds an annotation marked engine="edit-n"; odd n rewrites the
mask of annotation edit-(n-1) and logs {"edit": n} in its prompts.
"""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from annotator.core.store import Project

REPO = Path(__file__).resolve().parents[2]
H, W = 48, 64
KILLS = 20

CHILD = """
import sys
import numpy as np
from annotator.core.store import Project

H, W = 48, 64
path, n = sys.argv[1], int(sys.argv[2])

def mask(n):
    m = np.zeros((H, W), bool)
    m[: 1 + n % H, : 1 + (n * 7) % W] = True
    return m

with Project.open(path) as project:
    last = None
    if n % 2:   # resume with an update: find the annotation the previous edit added
        last = next(a.id for a in project.annotations() if a.engine == f"edit-{n - 1}")
    while True:
        if n % 2 == 0:
            last = project.add_annotation(1, 1, mask(n), engine=f"edit-{n}").id
        else:
            project.update_mask(last, mask(n), prompts=[{"edit": n}])
        print(f"ACK {n}", flush=True)
        n += 1
"""


def edits_present(path: Path) -> set[int]:
    with Project.open(path) as project:
        done = set()
        for ann in project.annotations():
            done.add(int(ann.engine.split("-")[1]))
            done.update(p["edit"] for p in ann.prompts)
        return done


def run_and_kill(script: Path, project: Path, start: int, rng: random.Random) -> list[int]:
    """Start a writer at edit `start`, SIGKILL it at a random point, return the ACKed edits."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, str(script), str(project), str(start)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    acks: list[int] = []
    got_ack = threading.Condition()

    def read() -> None:
        for line in child.stdout:   # lines already flushed still arrive after the kill
            if line.startswith("ACK "):
                with got_ack:
                    acks.append(int(line.split()[1]))
                    got_ack.notify()
        with got_ack:               # EOF: a writer that died by itself ends the wait
            got_ack.notify()

    reader = threading.Thread(target=read)
    reader.start()
    if rng.random() < 0.5:          # right after the k-th ACK
        wanted = rng.randint(1, 40)
        with got_ack:
            got_ack.wait_for(lambda: len(acks) >= wanted or child.poll() is not None, timeout=20)
    else:                           # at an arbitrary moment, start-up included
        time.sleep(rng.uniform(0.0, 0.8))
    child.send_signal(signal.SIGKILL)
    child.wait()
    reader.join()
    err = child.stderr.read()
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL, f"writer died on its own:\n{err}"
    return acks


@pytest.mark.slow
def test_sigkill_at_random_points_loses_no_accepted_edit(tmp_path: Path):
    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (W, H)).save(root / "a.png")
    path = tmp_path / "p.annot"
    with Project.create(path, root) as project:
        project.add_images(["a.png"])
        project.add_category("thing")
    script = tmp_path / "writer.py"
    script.write_text(CHILD)
    rng = random.Random(20240611)
    accepted: set[int] = set()
    present: set[int] = set()
    start, total_acks = 0, 0
    for _ in range(KILLS):
        before = present
        acks = run_and_kill(script, path, start, rng)
        assert acks == list(range(start, start + len(acks)))
        accepted.update(acks)
        total_acks += len(acks)

        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.close()
        present = edits_present(path)
        assert accepted <= present, f"lost accepted edits {sorted(accepted - present)}"
        assert before <= present
        # new without an ACK: at most the one edit in flight at the kill
        assert present - before <= set(acks) | {start + len(acks)}
        start = max(present, default=-1) + 1
    assert total_acks >= KILLS     # the kills did land among edits, not only at start-up
