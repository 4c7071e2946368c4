"""File ▸ Train… shows an engine's declared training options (the manifest's `options`):
for sam-mi its CLIP file, prefilled with the catalogue's CLIP when it is in the models
folder and browsable, and its stage; they reach the trainer's command line as
`--option clip=...` / `--option stage=...` (read back by the real `annotator train`
parser), an engine without options shows none, and a CLIP path naming no file is one
line and no run."""
from __future__ import annotations

import sys

from gui_helpers import WAIT_MS
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog
from test_training_job import FAKE_TRAINER

from annotator.ui.train_dialog import TrainDialog


def _inputs(tmp_path):
    images = tmp_path / "coco_images"
    images.mkdir()
    data = tmp_path / "coco.json"
    data.write_text('{"images": [], "annotations": [], "categories": []}')
    backbone = tmp_path / "sam_tiny.pth"
    backbone.write_bytes(b"a SAM file")          # the stand-in trainer never reads it
    return data, images, backbone


def test_sam_mi_options_reach_the_training_command(qtbot, tmp_path, monkeypatch):
    from annotator.cli import build_parser
    from annotator.commands.train import option_pairs
    models = tmp_path / "models"
    models.mkdir()
    (models / "ViT-B-16.pt").write_bytes(b"the catalogue's CLIP file")
    other_clip = tmp_path / "my_clip.pt"
    other_clip.write_bytes(b"another CLIP file")
    script = tmp_path / "fake_trainer.py"         # the stand-in trainer, taking --option too
    script.write_text(FAKE_TRAINER.replace('"--cache-dir"):', '"--cache-dir", "--option"):'))
    dialog = TrainDialog(directory=models)
    qtbot.addWidget(dialog)
    dialog.show()
    clip, stage = dialog.options.fields["sam-mi", "clip"], dialog.options.fields["sam-mi", "stage"]
    dialog.engine.setCurrentIndex(dialog.engine.findText("hq-sam"))
    assert not clip.isVisibleTo(dialog) and not stage.isVisibleTo(dialog)
    assert dialog.train_options == ()

    dialog.engine.setCurrentIndex(dialog.engine.findText("sam-mi"))
    assert clip.isVisibleTo(dialog) and stage.isVisibleTo(dialog)
    assert clip.text() == str(models / "ViT-B-16.pt")       # prefilled from the catalogue
    assert stage.currentText() == "1" and "TSPP" in stage.toolTip()
    assert dialog.train_options == ("--option", f"clip={models / 'ViT-B-16.pt'}",
                                    "--option", "stage=1")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(other_clip), ""))
    qtbot.mouseClick(dialog.options.browse["sam-mi", "clip"], Qt.MouseButton.LeftButton)
    assert clip.text() == str(other_clip)
    dialog.refresh_backbones()                      # a refresh keeps what the user chose
    assert clip.text() == str(other_clip)
    stage.setFocus()
    qtbot.keyClick(stage, Qt.Key.Key_Down)
    assert stage.currentText() == "2"

    data, images, backbone = _inputs(tmp_path)
    dialog.coco_path.setText(str(data))
    dialog.images_path.setText(str(images))
    dialog.add_backbone(backbone)
    dialog.launcher = [sys.executable, str(script), "--plugin-src", str(other_clip)]
    dialog.steps.setValue(2)
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.running, timeout=WAIT_MS)
    assert dialog.job.state == "done", dialog.result.text()
    args = build_parser().parse_args(dialog.job.argv[len(dialog.launcher):])
    assert args.engine == "sam-mi"
    assert option_pairs(args.option) == {"clip": str(other_clip), "stage": 2}

    clip.clear()                                     # empty: the one beside the SAM file
    qtbot.keyClicks(clip, str(tmp_path / "missing.pt"))
    job = dialog.job
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    assert dialog.job is job and not dialog.running
    assert dialog.result.text() == f"CLIP file: no file at {str(tmp_path / 'missing.pt')!r}"
    clip.clear()
    assert dialog.train_options == ("--option", "stage=2")
    dialog.shutdown()


def test_without_the_catalogue_clip_the_field_is_empty(qtbot, tmp_path):
    dialog = TrainDialog(directory=tmp_path)
    qtbot.addWidget(dialog)
    dialog.engine.setCurrentIndex(dialog.engine.findText("sam-mi"))
    assert dialog.options.fields["sam-mi", "clip"].text() == ""
    assert dialog.train_options == ("--option", "stage=1")
    (tmp_path / "ViT-B-16.pt").write_bytes(b"downloaded since")
    dialog.refresh_backbones()                      # reopening the dialog prefills it
    assert dialog.options.fields["sam-mi", "clip"].text() == str(tmp_path / "ViT-B-16.pt")
    dialog.shutdown()
