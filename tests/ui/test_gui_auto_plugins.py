"""The promptless Auto engines' trained plugins in the window's two dialogs: the model
picker lists PMG-SAM's and IP-SAM's plugins (tiny random-weight files) with the backbone
each pairs with, "automatic" names the plugin it would load, pmg-sam's frozen files are
no choice of their own, and a pinned plugin is what the real router then loads; the
Train dialog offers IP-SAM's "heads only" mode as a checkbox whose option reaches the
trainer's command line."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from annotator.commands.gui import SessionFactory
from annotator.ui.model_choice import PLUGIN_COLUMNS
from annotator.ui.model_dialog import ModelDialog
from annotator.ui.train_dialog import TrainDialog

from gui_helpers import WAIT_MS
from ip_sam_helpers import install_ip_sam
from pmg_helpers import install_pmg, patch_tiny_u2net
from test_gui_models import choose
from test_training_job import FAKE_TRAINER

COL = {name: i for i, name in enumerate(PLUGIN_COLUMNS)}


@pytest.fixture
def models(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    monkeypatch.setenv("ANNOTATOR_MODELS_DIR", str(folder))
    patch_tiny_u2net(monkeypatch)
    return {"folder": folder, "pmg": install_pmg(folder), "ip": install_ip_sam(folder)}


def test_the_picker_lists_and_pins_the_pmg_sam_and_ip_sam_plugins(qtbot, models, one_torch_thread):
    from engines.router import Router
    folder, pmg, ip = models["folder"], models["pmg"], models["ip"]
    applied = []
    start = {"checkpoints": {"sam2": str(ip["sam2"])}, "plugins": {}}   # the tiny SAM 2, pinned
    picker = ModelDialog(directory=folder, choice=start, list_plugins=SessionFactory.list_plugins,
                         apply_choice=lambda choice: applied.append(choice) or True)
    qtbot.addWidget(picker)
    table = picker.choices.table
    rows = {table.item(r, COL["Engine"]).text(): [table.item(r, c).text() for c in range(len(COL))]
            for r in range(table.rowCount())}
    assert set(rows) == {"pmg-sam", "ip-sam"}
    assert rows["pmg-sam"][COL["Plugin"]] == "pmg.safetensors"
    assert rows["pmg-sam"][COL["Backbone installed"]] == pmg["hiera"].name
    assert rows["ip-sam"][COL["Backbone installed"]] == "sam2_tiny_test.pt"
    assert rows["pmg-sam"][COL["Used"]] == rows["ip-sam"][COL["Used"]] == "yes"

    combos = picker.choices.combos
    assert combos["pmg-sam"].currentText() == "automatic (pmg.safetensors)"
    assert combos["ip-sam"].currentText() == "automatic (ip.safetensors)"
    pmg_items = [combos["pmg-sam"].itemText(i) for i in range(combos["pmg-sam"].count())]
    assert len(pmg_items) == 2 and pmg_items[1].startswith("plugin pmg.safetensors on hiera:")
    assert not {"pmg-sam-hiera-b+", "pmg-sam-u2net"} & set(pmg_items)   # frozen files: no choice
    # the catalogue's Used column: both frozen files load with whichever plugin
    used = {st.entry.name: picker.table.item(i, 5).text() for i, st in enumerate(picker.statuses)}
    assert used["pmg-sam-hiera-b+"] == used["pmg-sam-u2net"] == "yes"

    choose(qtbot, combos["pmg-sam"], "plugin pmg.safetensors")
    choose(qtbot, combos["ip-sam"], "plugin ip.safetensors")
    assert picker.apply_button.isEnabled()
    qtbot.mouseClick(picker.apply_button, Qt.MouseButton.LeftButton)
    pins = {"checkpoints": {"sam2": str(ip["sam2"])},
            "plugins": {"pmg-sam": str(pmg["plugin"]), "ip-sam": str(ip["plugin"])}}
    assert applied == [pins]
    assert {table.item(r, COL["Used"]).text() for r in range(table.rowCount())} == {"chosen"}

    router = Router(models_dir=folder, device="cpu", **pins)     # what the window is built with
    for engine, plugin in (("pmg-sam", pmg["plugin"]), ("ip-sam", ip["plugin"])):
        routed = router.route("auto", engine=engine)
        assert (routed.name, routed.plugin) == (engine, plugin)


def _coco(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "coco_images"
    images.mkdir()
    data = tmp_path / "coco.json"
    data.write_text('{"images": [], "annotations": [], "categories": []}')
    return data, images


def test_the_train_dialog_offers_heads_only_for_ip_sam_and_passes_it_on(qtbot, tmp_path, models):
    from annotator.cli import build_parser
    from annotator.commands.train import option_pairs
    script = tmp_path / "fake_trainer.py"        # the stand-in trainer, taking --option too
    script.write_text(FAKE_TRAINER.replace('"--cache-dir"):', '"--cache-dir", "--option"):'))
    dialog = TrainDialog(directory=models["folder"])
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.engine.setCurrentIndex(dialog.engine.findText("hq-sam"))
    assert not dialog.heads_only.isEnabled() and dialog.train_options == ()
    dialog.engine.setCurrentIndex(dialog.engine.findText("ip-sam"))
    box = dialog.heads_only
    assert box.isEnabled() and not box.isChecked()
    assert "cached" in box.toolTip() and "accuracy" in box.toolTip() and "memory" in box.toolTip()
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton)
    assert box.isChecked()

    data, images = _coco(tmp_path)
    dialog.coco_path.setText(str(data))
    dialog.images_path.setText(str(images))
    dialog.add_backbone(models["ip"]["sam2"])
    dialog.launcher = [sys.executable, str(script), "--plugin-src", str(models["ip"]["plugin"])]
    dialog.steps.setValue(3)
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.running, timeout=WAIT_MS)
    assert dialog.job.state == "done", dialog.result.text()
    argv = dialog.job.argv[len(dialog.launcher):]
    args = build_parser().parse_args(argv)          # the real `annotator train` reads it
    assert (args.engine, option_pairs(args.option)) == ("ip-sam", {"heads_only": True})

    dialog.engine.setCurrentIndex(dialog.engine.findText("hq-sam"))   # not an hq-sam mode
    assert not box.isChecked() and not box.isEnabled() and dialog.train_options == ()
    dialog.engine.setCurrentIndex(dialog.engine.findText("ip-sam"))
    assert not box.isChecked() and dialog.train_options == ()        # end to end by default
    dialog.shutdown()
