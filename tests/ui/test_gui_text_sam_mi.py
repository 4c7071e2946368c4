"""Typed class names in the window's text box propose with SAM-MI (training-free: a tiny
SAM checkpoint with a tiny CLIP file beside it, random weights, through the real router)
and land as candidates through the review queue, each named by its class."""
from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from gui_helpers import WAIT_MS, open_window
from review_helpers import scene_folder


@pytest.fixture
def window(request, qtbot, tmp_path, settings_path, monkeypatch, one_torch_thread):
    from annotator.core.session import build_session
    from engines.files import catalogue
    from engines.hosts.tiny import tiny_sam
    from engines.sam_mi import tiny_clip
    models = tmp_path / "models"
    path = catalogue.model_path(catalogue.get_entry("sam-vit-b"), models)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_sam(img_size=128).state_dict(), path)
    torch.save(tiny_clip().state_dict(), path.parent / "ViT-B-16.pt")
    monkeypatch.setattr(catalogue, "is_installed",
                        lambda e, d=None: catalogue.model_path(e, d).exists())
    monkeypatch.setattr("engines.hosts.sam.build_sam_architecture",
                        lambda arch: tiny_sam(img_size=128))
    monkeypatch.setenv("ANNOTATOR_MODELS_DIR", str(models))
    from engines.sam_mi.options import TextOptions      # random weights pass no AMG filter
    pred_iou = getattr(request, "param", 0.0)           # a test may ask for a filter none passes
    monkeypatch.setattr("engines.sam_mi.engine.TextOptions", lambda **kw: TextOptions(
        **{"pred_iou_thresh": pred_iou, "stability_score_thresh": 0.0, **kw}))

    def factory(on_event):
        return build_session(on_event, models_dir=str(models), device="cpu", cache_mb=64)
    w = open_window(qtbot, scene_folder(tmp_path), factory, settings_path)
    yield w
    w.shutdown()


def test_typed_class_names_become_named_candidates(qtbot, window):
    w = window
    assert "class name" in w.text_field.placeholderText(), w.text_field.toolTip()
    qtbot.keyClicks(w.text_field, "box, blob")
    qtbot.keyClick(w.text_field, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: bool(w.project.proposal_runs()), timeout=WAIT_MS * 4)
    QApplication.processEvents()
    run, = w.project.proposal_runs()
    assert (run.engine, run.outcome) == ("sam-mi", "done"), run.message
    assert run.settings["classes"] == ["box", "blob"] and run.settings["task"] == "text"
    pending = w.project.candidates(w.image_id)
    assert pending and {c.label for c in pending} <= {"box", "blob"}
    assert all(c.provenance["text"] == "box, blob" for c in pending)
    assert w.project.annotations(w.image_id) == []       # nothing accepted by itself
    assert w.project.categories() == []                  # new names make classes on accept
    w.canvas.setFocus()
    qtbot.keyClick(w.canvas, Qt.Key.Key_Tab)
    qtbot.keyClick(w.canvas, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(w.project.annotations(w.image_id)) == 1, timeout=WAIT_MS)
    ann, = w.project.annotations(w.image_id)
    assert w.project.category(ann.category_id).name == pending[0].label
    assert ann.provenance["engine"] == "sam-mi" and ann.provenance["text"] == "box, blob"



@pytest.mark.parametrize("window", [1.0], indirect=True)     # SAM's IoU never exceeds 1
def test_when_sams_filters_keep_no_mask_the_status_bar_says_why(qtbot, window):
    w = window
    qtbot.keyClicks(w.text_field, "box")
    qtbot.keyClick(w.text_field, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: "kept none of its" in w.statusBar().currentMessage(), timeout=WAIT_MS * 4)
    assert "no candidates" in w.statusBar().currentMessage()
    assert "pred_iou_thresh 1.0" in w.statusBar().currentMessage()
    assert w.project.candidates(w.image_id) == []
