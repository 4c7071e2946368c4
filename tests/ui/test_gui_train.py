"""File ▸ Train… with real widgets and a real child process: a stand-in trainer (no torch,
test_training_job.FAKE_TRAINER) takes `annotator train`'s arguments and writes its event
stream, and at the end installs a real HQ plugin file made here with save_plugin. Start
shows progress from those events, Stop stops, a finished run says where the plugin is
and the model picker lists it."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QPushButton

from annotator.commands.gui import SessionFactory
from annotator.ui.model_choice import PLUGIN_COLUMNS

from gui_helpers import WAIT_MS, click, key, open_window, wait_preview
from test_training_job import FAKE_TRAINER

COL = {name: i for i, name in enumerate(PLUGIN_COLUMNS)}


@pytest.fixture
def models(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("ANNOTATOR_MODELS_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def hq_files(tmp_path_factory):
    """A backbone file and an HQ plugin file saved for it with save_plugin, staged outside
    the models folder: the stand-in trainer installs a copy. (That such a plugin loads
    into the engine is test_gui_models' business; here only its metadata is read.)"""
    import torch

    from engines.files.checkpoints import checkpoint_identity
    from engines.files.plugins import save_plugin
    staged = tmp_path_factory.mktemp("staged")
    backbone = staged / "tiny_sam.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1, 4, 4, 16)}, backbone)
    plugin = save_plugin(staged / "hq.safetensors", {"hf_token.weight": torch.zeros(1, 16)},
                         engine="hq-sam", backbone_arch="sam:tiny",
                         backbone_checkpoint=checkpoint_identity(backbone),
                         metrics={"tight-box/miou": 0.8123})
    return backbone, plugin


@pytest.fixture
def window(qtbot, image_folder, settings_path, models, one_torch_thread, monkeypatch):
    w = open_window(qtbot, image_folder, SessionFactory(str(models), "cpu", 64), settings_path)
    yield w
    w.shutdown()


def open_train_dialog(qtbot, w, tmp_path, hq_files, monkeypatch, *, mode="ok", delay=0.0):
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    key(qtbot, w, Qt.Key.Key_T,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    dialog = w.train_dialog
    assert dialog is not None and dialog.isVisible()
    dialog.launcher = [sys.executable, str(script), "--plugin-src", str(hq_files[1]),
                       "--mode", mode, "--delay", str(delay)]
    dialog.engine.setCurrentIndex(dialog.engine.findText("hq-sam"))
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        lambda *a, **k: (str(hq_files[0]), ""))
    qtbot.mouseClick(dialog.browse_backbone, Qt.MouseButton.LeftButton)
    assert dialog.backbone.currentData() == str(hq_files[0])
    dialog.steps.setValue(20)
    return dialog


def accept_one_mask(qtbot, w):
    click(qtbot, w, 55, 45)
    wait_preview(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Return)
    assert w.project.annotations(w.image_id)


def test_a_run_shows_progress_and_its_plugin_appears_in_the_picker(
        qtbot, window, tmp_path, hq_files, models, monkeypatch):
    w = window
    accept_one_mask(qtbot, w)
    dialog = open_train_dialog(qtbot, w, tmp_path, hq_files, monkeypatch, delay=0.1)
    assert dialog.from_project.isChecked()
    t0 = time.monotonic()
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    assert time.monotonic() - t0 < 0.5             # export and trainer run elsewhere
    assert dialog.running and not dialog.start_button.isEnabled()
    assert not dialog.inputs.isEnabled() and dialog.stop_button.isEnabled()
    qtbot.waitUntil(lambda: dialog.bar.value() >= 3 and dialog.bar.maximum() == 20,
                    timeout=WAIT_MS)
    assert "step" in dialog.bar.format() and dialog.phase.text() == "Training…"
    assert dialog.numbers.text().startswith("loss 0.")
    assert "elapsed" in dialog.times.text() and "left" in dialog.times.text()
    argv = dialog.job.argv
    data = argv[argv.index("--data") + 1]
    assert data.endswith("coco.json") and argv[argv.index("--steps") + 1] == "20"
    assert "caching features: 2 / 2 images" in dialog.log.toPlainText()

    qtbot.waitUntil(lambda: not dialog.running, timeout=WAIT_MS)
    plugin = dialog.job.result_plugin
    assert plugin.parent.parent == models / "plugins" / "hq-sam" and plugin.is_file()
    assert str(plugin) in dialog.result.text() and "File ▸ Models" in dialog.result.text()
    assert dialog.bar.value() == 20 and dialog.start_button.isEnabled()
    assert "done: plugin" in dialog.log.toPlainText()
    assert not Path(data).exists()                # the export was temporary

    qtbot.mouseClick(dialog.models_button, Qt.MouseButton.LeftButton)
    picker = w.model_dialog
    assert picker is not None and picker.isVisible()
    table = picker.choices.table
    assert table.rowCount() == 1
    row = [table.item(0, c).text() for c in range(table.columnCount())]
    assert row[COL["Plugin"]] == plugin.name and row[COL["Engine"]] == "hq-sam"
    assert row[COL["Backbone"]] == "sam:tiny"
    assert row[COL["Held-out metrics"]] == "tight-box/miou 0.812"
    assert row[COL["Backbone installed"]] == "no"   # tiny_sam.pth is not a catalogue file
    hq_items = [picker.choices.combos["hq-sam"].itemText(i)
                for i in range(picker.choices.combos["hq-sam"].count())]
    assert any(t.startswith(f"plugin {plugin.name} on sam:tiny") for t in hq_items)


def test_stop_ends_the_run_without_a_plugin(qtbot, window, tmp_path, hq_files, monkeypatch):
    w = window
    accept_one_mask(qtbot, w)
    dialog = open_train_dialog(qtbot, w, tmp_path, hq_files, monkeypatch, mode="slow",
                               delay=0.05)
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.bar.value() >= 2, timeout=WAIT_MS)
    job = dialog.job
    t0 = time.monotonic()
    qtbot.mouseClick(dialog.stop_button, Qt.MouseButton.LeftButton)
    assert time.monotonic() - t0 < 0.5
    assert dialog.phase.text() == "Stopping…" and not dialog.stop_button.isEnabled()
    qtbot.waitUntil(lambda: not dialog.running, timeout=WAIT_MS)
    assert job.state == "stopped" and not job.alive
    assert "Stopped; no plugin was written" in dialog.result.text()
    assert not list(dialog.out_dir.glob("*.safetensors*"))
    assert dialog.start_button.isEnabled() and dialog.inputs.isEnabled()

    assert dialog.start()                        # closing the window stops a run too
    qtbot.waitUntil(lambda: dialog.bar.value() >= 1 and dialog.job is not job,
                    timeout=WAIT_MS)
    w.shutdown()
    assert dialog.job.state == "stopped" and not dialog.job.alive


def test_errors_are_shown_and_nothing_runs(qtbot, window, tmp_path, hq_files, monkeypatch):
    w = window
    dialog = open_train_dialog(qtbot, w, tmp_path, hq_files, monkeypatch, mode="crash")
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)   # nothing labelled yet
    qtbot.waitUntil(lambda: not dialog.running, timeout=WAIT_MS)
    assert "no accepted masks yet" in dialog.result.text() and dialog.job is None
    assert "bold" in dialog.result.styleSheet()

    dialog.from_coco.setChecked(True)
    dialog.coco_path.setText(str(tmp_path / "missing.json"))
    assert not dialog.start() and "no COCO file" in dialog.result.text()
    dialog.coco_path.setText(str(hq_files[0]))     # any file: the trainer never starts
    dialog.images_path.setText(str(tmp_path))
    launcher, dialog.launcher = dialog.launcher, [str(tmp_path / "no-such-program")]
    assert dialog.start()
    assert "Cannot start the trainer" in dialog.result.text() and not dialog.running
    dialog.launcher = launcher

    qtbot.mouseClick(dialog.findChild(QPushButton, "close"), Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=WAIT_MS)
    accept_one_mask(qtbot, w)
    key(qtbot, w, Qt.Key.Key_T,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert w.train_dialog is dialog and dialog.isVisible()          # the same one, reopened
    assert dialog.backbone.currentData() == str(hq_files[0])         # browsed file kept
    dialog.from_project.setChecked(True)
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.running, timeout=WAIT_MS)
    assert dialog.job.state == "failed"
    assert "Training failed" in dialog.result.text()
    assert "RuntimeError: CUDA out of memory" in dialog.result.text()
    assert not dialog.models_button.isVisible()
