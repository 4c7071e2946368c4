"""File ▸ Auto-label images… with real widgets: a batch over generated images with the
tiny SAM 2 proposer (an unreadable image in the middle is reported, the run goes on),
the summary, Cancel inside a proposer and a re-run that finishes the rest, and bad
input refused with one message and nothing run."""
from __future__ import annotations

import time

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from engines.types import CancelledError

from gui_helpers import WAIT_MS, key, open_window
from review_helpers import amg_factory, scene_folder

LEFT = Qt.MouseButton.LeftButton


@pytest.fixture
def window(qtbot, tmp_path, settings_path, one_torch_thread):
    w = open_window(qtbot, scene_folder(tmp_path), amg_factory(), settings_path)
    yield w
    w.shutdown()


def open_dialog(qtbot, w):
    key(qtbot, w, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier
        | Qt.KeyboardModifier.ShiftModifier)
    dialog = w.autolabel_dialog
    assert dialog is not None and dialog.isVisible()
    return dialog


def type_into(qtbot, field, text: str) -> None:
    field.selectAll()
    qtbot.keyClick(field, Qt.Key.Key_Delete)
    qtbot.keyClicks(field, text)


def run_to_end(qtbot, dialog) -> None:
    qtbot.mouseClick(dialog.start_button, LEFT)
    qtbot.waitUntil(lambda: dialog.summary is not None and not dialog.running,
                    timeout=4 * WAIT_MS)


def test_batch_reports_an_unreadable_image_and_goes_on(qtbot, window):
    w = window
    root = w.project.image_root
    (root / "img1.png").write_bytes(b"not a png at all")      # broken after the scan
    dialog = open_dialog(qtbot, w)
    assert dialog.engine.itemText(0) == "automatic"
    assert {"sam-amg", "sam2-amg"} <= {dialog.engine.itemText(i)
                                       for i in range(dialog.engine.count())}
    run_to_end(qtbot, dialog)
    s = dialog.summary
    assert s.done == 2 and [name for name, _ in s.failed] == ["img1.png"]
    text = dialog.report.toPlainText()
    assert "2 image(s) labelled" in text and "failed: img1.png:" in text
    assert dialog.progress.value() == dialog.progress.maximum() == 3
    pending = w.project.pending_counts()
    by_name = {w.project.image(i).file_name: n for i, n in pending.items()}
    assert set(by_name) == {"img0.png", "img2.png"} and sum(by_name.values()) == \
        sum(s.added.values())
    assert not w.project.annotations()                        # candidates, never annotations
    QApplication.processEvents()
    img2 = next(i.id for i in w.project.images() if i.file_name == "img2.png")
    assert w.images._rows[img2].text(1) == f"0 · {by_name['img2.png']} cand"
    assert "image(s) labelled" in w.statusBar().currentMessage()


def test_cancel_inside_the_proposer_then_rerun_finishes_the_rest(qtbot, window, monkeypatch):
    w = window
    real = w.session.batch_proposer

    class StopsAtSecond:
        """The real proposer on img0; later images wait until cancelled."""
        def __init__(self, inner):
            self.inner, self.name, self.model = inner, inner.name, inner.model

        def propose(self, path, cancel=None):
            if str(path).endswith("img0.png"):
                return self.inner.propose(path, cancel)
            while not cancel():
                time.sleep(0.01)
            raise CancelledError("cancelled")

    monkeypatch.setattr(w.session, "batch_proposer", lambda *a, **k: StopsAtSecond(real(*a, **k)))
    dialog = open_dialog(qtbot, w)
    qtbot.mouseClick(dialog.start_button, LEFT)
    qtbot.waitUntil(lambda: dialog.progress.value() == 1, timeout=4 * WAIT_MS)
    assert dialog.cancel_button.isEnabled() and not dialog.start_button.isEnabled()
    assert "left" in dialog.state.text()                      # time left is shown
    qtbot.mouseClick(dialog.cancel_button, LEFT)
    qtbot.waitUntil(lambda: dialog.summary is not None and not dialog.running,
                    timeout=4 * WAIT_MS)
    assert dialog.summary.cancelled and dialog.summary.done == 1
    assert "cancelled" in dialog.report.toPlainText()
    first = {c.id for c in w.project.candidates()}
    assert first and {c.image_id for c in w.project.candidates()} == {w.images.image_ids[0]}

    monkeypatch.setattr(w.session, "batch_proposer", real)    # the real one: finish the rest
    run_to_end(qtbot, dialog)
    s = dialog.summary
    assert not s.cancelled and s.done == 2 and s.skipped_done == 1
    assert first < {c.id for c in w.project.candidates()}
    assert set(w.project.pending_counts()) == set(w.images.image_ids)


@pytest.mark.parametrize("field, text, message", [
    ("threshold", "1.5", "threshold 1.5 is not a number in [0, 1]"),
    ("threshold", "high", "threshold 'high' is not a number"),
    ("min_area", "-3", "minimum area -3 is not a whole number"),
    ("text", " , ", "give at least one class name"),
])
def test_bad_input_is_one_message_and_nothing_runs(qtbot, window, field, text, message):
    w = window
    dialog = open_dialog(qtbot, w)
    type_into(qtbot, getattr(dialog, field), text)
    qtbot.mouseClick(dialog.start_button, LEFT)
    assert dialog.state.text().startswith("not started: ") and message in dialog.state.text()
    assert not dialog.running and dialog.summary is None
    assert not w.project.candidates() and not w.project.proposal_runs()


def test_text_classes_without_a_text_engine_say_so(qtbot, window):
    dialog = open_dialog(qtbot, window)
    type_into(qtbot, dialog.text, "cat, dog")
    qtbot.mouseClick(dialog.start_button, LEFT)
    assert "no text engine installed" in dialog.state.text() and not dialog.running
