"""The curator's loop in one window, with real widgets, real events and the real commands in
child processes (tiny random-weight SAM, 2 training steps): label every image (classic
engine), pin a SAM checkpoint in the model picker, File ▸ Train… a stable-sam plugin on the
project, see the picker list it and the next click answered by it, then File ▸ Evaluate…
it beside plain SAM on the images the trainer held out. Each hand-over is checked: the
export the trainer read, the plugin it wrote, the router's choice, the numbers shown."""
from __future__ import annotations

import json
import shutil

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from annotator.commands.gui import SessionFactory
from annotator.ui import eval_dialog, train_dialog
from annotator.ui.model_choice import PLUGIN_COLUMNS

from gui_helpers import WAIT_MS, click, key, open_window, wait_preview
from test_gui_models import choose

CTRL_SHIFT = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
RUN_MS = 180_000      # a child process importing torch on a loaded 2-core machine
CENTRES = [(55, 45), (85, 55), (30, 35)]     # of conftest.IMAGES' objects
FREE = (100, 70)      # on the last image, off its accepted instance (a click there selects it)


@pytest.fixture
def backbone(tmp_path):
    import torch

    from engines.hosts.tiny import tiny_sam
    path = tmp_path / "elsewhere" / "tiny_sam.pth"     # not a catalogue file: pinned
    path.parent.mkdir()
    torch.save(tiny_sam(img_size=128, seed=0).state_dict(), path)
    return path


def label_every_image(qtbot, w):
    for i, (x, y) in enumerate(CENTRES):
        click(qtbot, w, x, y)
        wait_preview(qtbot, w)
        key(qtbot, w, Qt.Key.Key_Return)
        assert len(w.project.annotations(w.image_id)) == 1
        if i + 1 < len(CENTRES):
            image = w.image_id
            key(qtbot, w, Qt.Key.Key_D)
            qtbot.waitUntil(lambda image=image: w.image_id != image, timeout=WAIT_MS)
    assert w.engine_label.text() == "engine: classic"


def focus(qtbot, w):
    """The window active again after a dialog, so its shortcuts reach it."""
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=WAIT_MS)


def pin_sam(qtbot, w, backbone, monkeypatch):
    key(qtbot, w, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier)
    picker = w.model_dialog
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(backbone), ""))
    choose(qtbot, picker.choices.combos["sam"], "Other checkpoint file")
    qtbot.mouseClick(picker.apply_button, Qt.MouseButton.LeftButton)
    picker.reject()
    focus(qtbot, w)


def test_label_train_route_and_evaluate(qtbot, tmp_path, image_folder, settings_path,
                                        backbone, monkeypatch, one_torch_thread):
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("ANNOTATOR_MODELS_DIR", str(models))
    kept = {}

    def keeping(export):         # the real export, and a copy of what the trainer reads
        def wrapper(project, out_dir):
            data, images = export(project, out_dir)
            kept["data"], kept["copy"] = data, tmp_path / "trained_on.json"
            shutil.copy(data, kept["copy"])
            return data, images
        return wrapper
    monkeypatch.setattr(train_dialog, "export_project_for_training",
                        keeping(train_dialog.export_project_for_training))
    w = open_window(qtbot, image_folder, SessionFactory(str(models), "cpu", 64), settings_path)
    try:
        label_every_image(qtbot, w)
        pin_sam(qtbot, w, backbone, monkeypatch)
        click(qtbot, w, *FREE)
        wait_preview(qtbot, w)
        assert w.engine_label.text() == "engine: sam"     # no plugin yet: plain SAM
        key(qtbot, w, Qt.Key.Key_Escape)

        # File ▸ Train… on the project: the export, the trainer's command, the plugin
        key(qtbot, w, Qt.Key.Key_T, CTRL_SHIFT)
        train = w.train_dialog
        choose(qtbot, train.engine, "stable-sam")
        assert train.backbone.currentData() == str(backbone)      # the pinned checkpoint
        assert train.from_project.isChecked()
        train.steps.setValue(2)
        train.batch_size.setValue(2)
        qtbot.mouseClick(train.start_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not train.running, timeout=RUN_MS)
        assert train.job.state == "done", train.result.text()
        argv = train.job.argv
        flags = dict(zip(argv[argv.index("--data")::2], argv[argv.index("--data") + 1::2], strict=True))
        assert flags["--data"] == str(kept["data"]) and flags["--steps"] == "2"
        assert (flags["--val-fraction"], flags["--seed"]) == ("0.1", "0")
        coco = json.loads(kept["copy"].read_text())
        assert [c["name"] for c in coco["categories"]] == ["object"]
        assert sorted(i["file_name"] for i in coco["images"]) == ["img0.png", "img1.png", "img2.png"]
        per_image = {i["id"]: i["file_name"] for i in coco["images"]}
        assert sorted(per_image[a["image_id"]] for a in coco["annotations"]) == \
            ["img0.png", "img1.png", "img2.png"]                    # one object per image
        from annotator.core.geometry import rle_area_bbox
        stored = sorted(rle_area_bbox(a.rle)[0] for a in w.project.annotations())
        assert sorted(a["area"] for a in coco["annotations"]) == stored and stored[0] > 0
        assert all(a["engine"] == "classic" and any(p.get("type") == "point" for p in a["prompts"])
                   for a in coco["annotations"])              # the clicks ride along

        plugin = train.job.result_plugin
        assert plugin.is_file() and plugin.parent.parent == models / "plugins" / "stable-sam"
        from engines.files.identity import checkpoint_identity
        from engines.files.plugin_meta import read_plugin_metadata
        meta = read_plugin_metadata(plugin)
        assert (meta["engine"], meta["steps"]) == ("stable-sam", 2)
        assert meta["backbone_checkpoint"] == checkpoint_identity(backbone)
        assert f"trained {plugin.name}; engines restarted" in w.statusBar().currentMessage()

        # the router's choice: the picker lists it as used, the next click is the plugin's
        qtbot.mouseClick(train.models_button, Qt.MouseButton.LeftButton)
        picker = w.model_dialog
        col = {name: i for i, name in enumerate(PLUGIN_COLUMNS)}
        row = {c: picker.choices.table.item(0, i).text() for c, i in col.items()}
        assert picker.choices.table.rowCount() == 1
        assert (row["Plugin"], row["Engine"]) == (plugin.name, "stable-sam")
        assert (row["Backbone installed"], row["Used"]) == (backbone.name, "yes")
        assert picker.choices.combos["stable-sam"].currentText() == f"automatic ({plugin.name})"
        picker.reject()
        train.hide()
        focus(qtbot, w)
        click(qtbot, w, *FREE)
        wait_preview(qtbot, w)
        assert w.engine_label.text() == "engine: stable-sam"
        assert plugin.name in w.engine_label.toolTip() and backbone.name in w.engine_label.toolTip()
        assert w.engine_label in w.statusBar().findChildren(type(w.engine_label))
        key(qtbot, w, Qt.Key.Key_Escape)
        focus(qtbot, w)

        # File ▸ Evaluate…: the same held-out images, host and plugin side by side
        key(qtbot, w, Qt.Key.Key_E, CTRL_SHIFT)
        ev = w.eval_dialog
        assert ev is not None and ev.isVisible()
        assert [ev.engine.itemText(i) for i in range(ev.engine.count())] == ["stable-sam"]
        assert ev.plugin.currentData() == (str(plugin), str(backbone))
        ev.prompts.selectAll()
        qtbot.keyClicks(ev.prompts, "2")
        assert ev.prompts.value() == 2
        qtbot.mouseClick(ev.start_button, Qt.MouseButton.LeftButton)
        assert ev.running and not ev.start_button.isEnabled()
        qtbot.waitUntil(lambda: not ev.running, timeout=RUN_MS)
        job = ev.job
        assert job.state == "done", ev.result.text()
        assert job.argv[job.argv.index("--split") + 1] == "val"
        assert job.argv[job.argv.index("--plugin") + 1] == str(plugin)

        from training.data import CocoInstances, split_by_group
        _, val = split_by_group(CocoInstances.load(kept["copy"], image_folder), 0.1, 0)
        trainer_val = sorted(i.file_name for i in val.images)   # what the trainer held out
        assert ev.held.images == trainer_val and ev.held.of_images == 3
        assert f"Held out: 1 of 3 images, 1 object ({trainer_val[0]})" == ev.split_info.text()

        results = job.results
        assert set(results) == {"stable-sam", "sam"}
        protocols = ["noisy-box", "1-point", "3-point", "tight-box"]
        table = ev.table
        heads = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
        assert heads[:3] == ["Protocol", "sam mIoU", "stable-sam mIoU"]
        cells = {table.item(r, 0).text(): {h: table.item(r, c).text() for c, h in enumerate(heads)}
                 for r in range(table.rowCount())}
        assert list(cells) == protocols
        for p in protocols:
            for engine in ("sam", "stable-sam"):
                miou = results[engine][p]["miou"]
                assert 0 <= miou <= 100 and cells[p][f"{engine} mIoU"] == f"{miou:.1f}"
                assert cells[p][f"{engine} mBIoU"] == f"{results[engine][p]['mbiou']:.1f}"
            assert cells[p]["Objects"] == "1" == str(results["stable-sam"][p]["n"])
        assert cells["tight-box"]["sam ST"] == "—"      # one deterministic prompt
        assert 0 <= float(cells["1-point"]["stable-sam ST"]) <= 100
        assert "beside sam on 1 held-out object, 2 prompts each" in ev.result.text()
    finally:
        w.shutdown()


def test_evaluate_with_no_trained_plugin_says_what_to_do(qtbot, image_folder, settings_path,
                                                          classic_factory):
    w = open_window(qtbot, image_folder, classic_factory, settings_path)
    key(qtbot, w, Qt.Key.Key_E, CTRL_SHIFT)
    ev = w.eval_dialog
    assert ev.engine.count() == 0 and not ev.start_button.isEnabled()
    assert "File ▸ Train… first" in ev.phase.text()
    assert not ev.start() and "choose a trained plugin" in ev.result.text()
    assert eval_dialog.SHORTCUT in [a.shortcut().toString() for a in w.menus["File"].actions()]
    w.shutdown()


def test_evaluate_shows_the_paired_difference_and_stops(qtbot, tmp_path, image_folder,
                                                        settings_path, classic_factory):
    """The eval command's newer JSON (a paired block, per-object keys) through the dialog,
    from a stand-in command (test_eval_job.FAKE_EVAL); Stop ends a run with no numbers."""
    import sys

    from engines.files.plugin_index import InstalledPlugin

    from test_eval_job import FAKE_EVAL
    script, plugin, backbone = tmp_path / "fake_eval.py", tmp_path / "p.safetensors", tmp_path / "b.pth"
    script.write_text(FAKE_EVAL)
    plugin.write_bytes(b"")
    backbone.write_bytes(b"")
    w = open_window(qtbot, image_folder, classic_factory, settings_path)
    try:
        label_every_image(qtbot, w)
        key(qtbot, w, Qt.Key.Key_E, CTRL_SHIFT)
        ev = w.eval_dialog
        ev.list_plugins = lambda folder, pinned: [
            (InstalledPlugin(plugin, "hq-sam", "sam:tiny", "x", "2026-01-02T03:04"), backbone)]
        ev.refresh()
        assert ev.engine.currentText() == "hq-sam" and ev.start_button.isEnabled()
        ev.launcher = [sys.executable, str(script), "--mode", "ok"]
        qtbot.mouseClick(ev.start_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not ev.running, timeout=WAIT_MS)
        heads = [ev.table.horizontalHeaderItem(c).text() for c in range(ev.table.columnCount())]
        assert heads[:4] == ["Protocol", "sam mIoU", "hq-sam mIoU", "Δ mIoU [95% CI]"]
        assert [ev.table.item(0, c).text() for c in range(4)] == \
            ["tight-box", "40.0", "55.0", "+15.0 [+9.5, +20.0]"]
        assert ev.bar.value() == ev.bar.maximum()

        ev.launcher = [sys.executable, str(script), "--mode", "slow"]
        qtbot.mouseClick(ev.start_button, Qt.MouseButton.LeftButton)
        assert ev.table.rowCount() == 0                      # the last numbers are gone
        qtbot.waitUntil(lambda: ev.phase.text() == "Evaluating…", timeout=WAIT_MS)
        qtbot.mouseClick(ev.stop_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not ev.running, timeout=WAIT_MS)
        assert ev.job.state == "stopped" and ev.result.text() == "Stopped; no numbers."
        assert ev.table.rowCount() == 0 and ev.start_button.isEnabled()

        ev.launcher = [sys.executable, str(script), "--mode", "bad"]
        qtbot.mouseClick(ev.start_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not ev.running, timeout=WAIT_MS)
        assert ev.result.text() == ("Evaluation failed: annotator eval: error: the val split "
                                    "is empty")
        assert "bold" in ev.result.styleSheet()
    finally:
        w.shutdown()
