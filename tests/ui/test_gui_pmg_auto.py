"""Auto in the window proposes with PMG-SAM once its three files are in the models folder
(tiny Hiera, tiny U²-Net, a random-weight plugin trained on both): the real router picks
it first in the "auto" chain, its components become candidates through the review queue,
and one is accepted with PMG-SAM's provenance."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from gui_helpers import WAIT_MS, key, open_window
from pmg_helpers import install_pmg, patch_tiny_u2net
from review_helpers import scene_folder


@pytest.fixture
def window(qtbot, tmp_path, settings_path, monkeypatch, one_torch_thread):
    from annotator.core.session import build_session
    models = tmp_path / "models"
    install_pmg(models)
    patch_tiny_u2net(monkeypatch)
    monkeypatch.setenv("ANNOTATOR_MODELS_DIR", str(models))

    def factory(on_event):
        return build_session(on_event, models_dir=str(models), device="cpu", cache_mb=64)
    w = open_window(qtbot, scene_folder(tmp_path), factory, settings_path)
    yield w
    w.shutdown()


def test_auto_proposes_with_pmg_sam_through_the_review_queue(qtbot, window):
    w = window
    assert w.auto_button.isEnabled(), w.auto_button.toolTip()
    key(qtbot, w, Qt.Key.Key_G)
    qtbot.waitUntil(lambda: "candidate(s) added" in w.statusBar().currentMessage()
                    or "found no" in w.statusBar().currentMessage(), timeout=WAIT_MS * 4)
    QApplication.processEvents()
    assert w.engine_label.text() == "engine: pmg-sam"
    runs = w.project.proposal_runs()
    assert [r.engine for r in runs] == ["pmg-sam"] and runs[0].outcome == "done"
    pending = w.project.candidates(w.image_id)
    assert pending, "random weights still give components on a cluttered scene"
    assert {c.engine for c in pending} == {"pmg-sam"}
    key(qtbot, w, Qt.Key.Key_Tab)                    # select the best shown one
    key(qtbot, w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(w.project.annotations(w.image_id)) == 1, timeout=WAIT_MS)
    ann, = w.project.annotations(w.image_id)
    assert ann.provenance["origin"] == "engine" and ann.provenance["engine"] == "pmg-sam"
    assert "pmg.safetensors" in ann.provenance["model"]
