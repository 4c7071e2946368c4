"""The review queue through the real window and a tiny random-weight SAM 2 "segment
everything" proposer: Auto (G) stores candidates; clicks select them; Enter accepts,
Delete rejects, a vertex drag and the brush edit one; each step undoes and redoes;
only accepted ones reach a COCO export, with their provenance. Also the threshold
slider, Shift+Enter / Shift+Delete, next image with pending candidates, and Auto
disabled when no proposer is installed."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from annotator.core.formats import coco
from annotator.core.geometry import rle_to_mask
from annotator.ui.targets import candidate

from gui_helpers import WAIT_MS, click, drag, key, open_window
from review_helpers import amg_factory, point_selecting, scene_folder

SHIFT = Qt.KeyboardModifier.ShiftModifier
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def window(qtbot, tmp_path, settings_path, one_torch_thread):
    w = open_window(qtbot, scene_folder(tmp_path), amg_factory(), settings_path)
    yield w
    w.shutdown()


def wait_ready(qtbot, w) -> None:
    """The image's own "ready" status would otherwise race with (and replace) a message."""
    qtbot.waitUntil(lambda: w.images.state(w.image_id) == "ready", timeout=WAIT_MS)
    QApplication.processEvents()


def run_auto(qtbot, w) -> list[int]:
    """G on the current image; the stored pending candidates' ids (best first)."""
    assert w.auto_button.isEnabled()
    key(qtbot, w, Qt.Key.Key_G)
    qtbot.waitUntil(lambda: bool(w.project.candidates(w.image_id)), timeout=WAIT_MS)
    QApplication.processEvents()
    return [c.id for c in w.project.candidates(w.image_id)]


def select_by_click(qtbot, w, cand_id: int) -> None:
    key(qtbot, w, Qt.Key.Key_Escape)                 # nothing selected, no prompt
    assert w.review.selected is None
    click(qtbot, w, *point_selecting(w, cand_id))
    assert w.review.selected == cand_id
    assert w.labeler.prompt.is_empty                 # the click was not a prompt point


def clickable(w, ids: list[int]) -> list[int]:
    out = []
    for i in ids:
        try:
            point_selecting(w, i)
            out.append(i)
        except AssertionError:
            pass
    return out


def state(w) -> tuple:
    """What the store holds on the current image: pending (id, edited), rejected ids,
    annotations' (candidate id, review)."""
    image = w.image_id
    pending = sorted((c.id, c.edited) for c in w.project.candidates(image))
    rejected = sorted(c.id for c in w.project.candidates(image, status="rejected"))
    anns = sorted((a.provenance.get("candidate_id"), a.provenance.get("review"))
                  for a in w.project.annotations(image))
    return pending, rejected, anns


def test_auto_accept_reject_edit_undo_redo_and_export(qtbot, window, tmp_path):
    w = window
    ids = run_auto(qtbot, w)
    assert len(w.canvas.candidates.entries) == len(ids) >= 4
    message = w.statusBar().currentMessage()
    assert "sam2-amg" in message and f"{len(ids)} candidate(s) added" in message
    assert w.engine_label.text() == "engine: sam2-amg"
    row = w.images._rows[w.image_id]
    qtbot.waitUntil(lambda: row.text(1) == f"0 · {len(ids)} cand", timeout=WAIT_MS)
    a, b, c, d = clickable(w, ids)[:4]
    states = [state(w)]

    select_by_click(qtbot, w, a)                     # accept A
    key(qtbot, w, Qt.Key.Key_Return)
    states.append(state(w))
    assert (a, "accepted") in states[-1][2] and a not in dict(states[-1][0])

    select_by_click(qtbot, w, b)                     # reject B
    key(qtbot, w, Qt.Key.Key_Delete)
    states.append(state(w))
    assert states[-1][1] == [b]

    select_by_click(qtbot, w, c)                     # edit C: drag a vertex outward
    ed = w.polygons
    qtbot.waitUntil(lambda: ed.target == candidate(c) and ed.handles_shown, timeout=WAIT_MS)
    before = rle_to_mask(w.project.candidate(c).rle)
    x, y = ed.vertex(0, 0)
    cy, cx = np.argwhere(before).mean(axis=0)
    step = np.array([x - cx, y - cy]) / max(1e-6, np.hypot(x - cx, y - cy)) * 6
    nx, ny = np.clip(x + step[0], 0, 127), np.clip(y + step[1], 0, 95)
    drag(qtbot, w, x, y, float(nx), float(ny))
    qtbot.waitUntil(lambda: w.project.candidate(c).edited, timeout=WAIT_MS)
    assert not np.array_equal(rle_to_mask(w.project.candidate(c).rle), before)
    assert w.stack.undo_text.lower().startswith("move polygon vertex")
    states.append(state(w))

    key(qtbot, w, Qt.Key.Key_Return)                 # accept the edited C (still selected)
    states.append(state(w))
    assert (c, "edited") in states[-1][2]

    select_by_click(qtbot, w, d)                     # brush on D
    key(qtbot, w, Qt.Key.Key_B)
    d_before = rle_to_mask(w.project.candidate(d).rle)
    px, py = point_selecting(w, d)
    drag(qtbot, w, px, py, min(px + 20, 127), py)
    key(qtbot, w, Qt.Key.Key_Escape)                 # leave the brush
    d_after = rle_to_mask(w.project.candidate(d).rle)
    assert w.project.candidate(d).edited and d_after.sum() > d_before.sum()
    states.append(state(w))

    for i in range(len(states) - 1, 0, -1):          # undo every step, back to Auto's result
        key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        assert state(w) == states[i - 1], f"undo of step {i}"
    assert np.array_equal(rle_to_mask(w.project.candidate(c).rle), before)
    for i in range(1, len(states)):                  # and redo them all
        key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | SHIFT)
        assert state(w) == states[i], f"redo of step {i}"
    assert np.array_equal(rle_to_mask(w.project.candidate(d).rle), d_after)

    out = tmp_path / "coco.json"
    coco.write(w.project.export_dataset(), out)
    doc = json.loads(out.read_text())
    got = sorted((x["provenance"]["candidate_id"], x["provenance"]["origin"],
                  x["provenance"]["review"], x["engine"]) for x in doc["annotations"])
    assert got == [(a, "engine", "accepted", "sam2-amg"), (c, "engine", "edited", "sam2-amg")]
    assert all(x["provenance"]["model"] == "sam2:tiny:test" and x["provenance"]["run_id"]
               for x in doc["annotations"])


def test_threshold_slider_hides_and_shows_and_accept_all_shown(qtbot, window, settings_path):
    w = window
    ids = run_auto(qtbot, w)
    scores = {c.id: c.score for c in w.project.candidates(w.image_id)}
    layer = w.canvas.candidates
    cut = sorted(scores.values())[len(scores) // 2]          # about half stay shown
    w.review.slider.slider.setFocus()
    while w.review.threshold < cut - 1e-9:
        qtbot.keyClick(w.review.slider.slider, Qt.Key.Key_Right)   # real key steps, 0.01 each
    shown = {e.id for e in layer.shown()}
    assert shown == {i for i, s in scores.items() if s >= w.review.threshold}
    assert 0 < len(shown) < len(ids)
    hidden = next(i for i in ids if i not in shown)
    assert layer.hit(*pixel_of(w, hidden)) != hidden         # a hidden one is not clickable
    w.canvas.setFocus()
    key(qtbot, w, Qt.Key.Key_Return, SHIFT)                  # accept all shown
    anns = w.project.annotations(w.image_id)
    assert sorted(a.provenance["candidate_id"] for a in anns) == sorted(shown)
    assert {c.id for c in w.project.candidates(w.image_id)} == set(ids) - shown
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not w.project.annotations(w.image_id)
    w.review.slider.set_value(0.0)                           # everything shown again
    assert {e.id for e in layer.shown()} == set(ids)
    key(qtbot, w, Qt.Key.Key_Delete, SHIFT)                  # reject all shown
    assert not w.project.candidates(w.image_id)
    assert len(w.project.candidates(w.image_id, status="rejected")) == len(ids)
    assert w.settings.value("review/threshold") is not None


def pixel_of(w, cand_id: int) -> tuple[float, float]:
    c = w.project.candidate(cand_id)
    ys, xs = np.nonzero(rle_to_mask(c.rle))
    return float(xs[len(xs) // 2]) + 0.5, float(ys[len(ys) // 2]) + 0.5


def test_next_image_with_pending_candidates(qtbot, window):
    w = window
    first = w.image_id
    wait_ready(qtbot, w)
    key(qtbot, w, Qt.Key.Key_N, SHIFT)
    assert "no image has pending" in w.statusBar().currentMessage()
    key(qtbot, w, Qt.Key.Key_D)                              # the second image: Auto there
    second = w.image_id
    assert second != first
    qtbot.waitUntil(lambda: w.images.state(second) == "ready", timeout=WAIT_MS)
    run_auto(qtbot, w)
    key(qtbot, w, Qt.Key.Key_A)
    assert w.image_id == first
    key(qtbot, w, Qt.Key.Key_N, SHIFT)
    assert w.image_id == second and w.canvas.candidates.entries


def test_auto_is_disabled_with_what_to_install(qtbot, image_folder, settings_path,
                                               tiny_sam_factory):
    w = open_window(qtbot, image_folder, tiny_sam_factory, settings_path)
    assert not w.auto_button.isEnabled()
    assert "no proposal engine installed" in w.auto_button.toolTip()
    wait_ready(qtbot, w)
    key(qtbot, w, Qt.Key.Key_G)
    assert "no proposal engine installed" in w.statusBar().currentMessage()
    assert not w.project.candidates()
    w.shutdown()
    none = open_window(qtbot, image_folder, None, settings_path)
    assert not none.auto_button.isEnabled() and "no engine running" in none.auto_button.toolTip()
    none.shutdown()


def test_typed_classes_go_through_the_same_queue(qtbot, tmp_path, settings_path,
                                                 one_torch_thread):
    w = open_window(qtbot, scene_folder(tmp_path), amg_factory(text=True), settings_path)
    assert w.text_field.placeholderText() == "class name, Enter"
    wait_ready(qtbot, w)
    w.text_field.setFocus()
    qtbot.keyClicks(w.text_field, "cat")
    qtbot.keyClick(w.text_field, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: bool(w.project.candidates(w.image_id)), timeout=WAIT_MS)
    cands = w.project.candidates(w.image_id)
    assert {c.label for c in cands} == {"cat"} and cands[0].provenance["text"] == "cat"
    assert "fake-text" in w.statusBar().currentMessage()
    QApplication.processEvents()
    key(qtbot, w, Qt.Key.Key_Return, SHIFT)                  # accept all: class "cat" made
    assert [c.name for c in w.project.categories()] == ["cat"]
    assert len(w.project.annotations(w.image_id)) == len(cands)
    w.shutdown()


def test_the_window_modules_load_no_torch():
    code = ("import sys; import annotator.ui.main_window, annotator.ui.review, "
            "annotator.ui.autolabel_dialog, annotator.ui.candidate_layer; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == "False"
