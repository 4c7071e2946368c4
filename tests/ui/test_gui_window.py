"""Window plumbing: opening folders and projects, review state, classes, visibility,
zoom/pan, text/Auto messages, settings, export in every format, the `gui` command."""
from __future__ import annotations

import argparse

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication

from annotator.core.errors import ProjectError
from annotator.core.formats import FORMATS
from annotator.ui import app
from annotator.ui.export_dialog import ExportDialog, export_project
from annotator.ui.settings import open_settings

from gui_helpers import WAIT_MS, click, key, open_window, wait_preview


def test_open_target_creates_then_reopens_the_folder_project(image_folder, tmp_path):
    with app.open_target(image_folder) as project:
        assert project.path == image_folder / app.PROJECT_FILE
        assert [i.file_name for i in project.images()] == ["img0.png", "img1.png", "img2.png"]
        project.add_category("thing")
    (image_folder / "extra.png").write_bytes((image_folder / "img0.png").read_bytes())
    with app.open_target(image_folder) as project:      # reopened: new file found
        assert [c.name for c in project.categories()] == ["thing"]
        assert len(project.images()) == 4
    with app.open_target(image_folder / app.PROJECT_FILE) as project:
        assert len(project.images()) == 4
    with pytest.raises(ProjectError, match="no such folder or project file"):
        app.open_target(tmp_path / "missing")


def test_bundled_samples_get_their_project_outside_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("ANNOTATOR_DATA_DIR", str(tmp_path / "data"))
    path = app.project_path_for(app.samples_folder())
    assert str(path).startswith(str(tmp_path / "data"))
    assert not (app.samples_folder() / app.PROJECT_FILE).exists()


def test_window_without_engines_still_opens_and_says_so(qtbot, image_folder, settings_path):
    w = open_window(qtbot, image_folder, None, settings_path)
    assert "no engine" in w.device_label.text()
    click(qtbot, w, 55, 45)
    assert "no engine" in w.statusBar().currentMessage()
    w.shutdown()


def test_review_navigation_classes_and_visibility(qtbot, image_folder, settings_path,
                                                  classic_factory):
    w = open_window(qtbot, image_folder, classic_factory, settings_path)
    ids = w.images.image_ids
    key(qtbot, w, Qt.Key.Key_R)                          # mark img0 reviewed
    assert w.project.image(ids[0]).reviewed
    qtbot.waitUntil(lambda: w.images._rows[ids[0]].text(3) == "✓", timeout=WAIT_MS)
    key(qtbot, w, Qt.Key.Key_N)                          # next unreviewed
    assert w.image_id == ids[1]
    key(qtbot, w, Qt.Key.Key_PageUp)
    assert w.image_id == ids[0]
    key(qtbot, w, Qt.Key.Key_PageUp)                     # clamped at the first image
    assert w.image_id == ids[0]

    # the first accept with no class creates "object"; rename and recolour are undoable
    click(qtbot, w, 55, 45)
    wait_preview(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Return)
    (ann,) = w.project.annotations(ids[0])
    assert w.project.category(ann.category_id).name == "object"
    w.classes.rename_requested.emit(ann.category_id, "box")
    w.classes.recolor_requested.emit(ann.category_id, "#00ff00")
    cat = w.project.category(ann.category_id)
    assert (cat.name, cat.color) == ("box", "#00ff00")
    qtbot.waitUntil(lambda: "box" in w.classes.list.item(0).text(), timeout=WAIT_MS)
    w.undo()
    assert w.project.category(ann.category_id).color == ""
    w.add_class("box")                                   # a duplicate name is refused
    assert "already exists" in w.statusBar().currentMessage()

    # hide the instance from the list, then delete it with Del and undo
    qtbot.waitUntil(lambda: w.canvas.instance_ids == [ann.id], timeout=WAIT_MS)
    w.instances.set_visible(ann.id, False)
    qtbot.waitUntil(lambda: not w.canvas.instance_visible(ann.id), timeout=WAIT_MS)
    click(qtbot, w, 55, 45, modifier=Qt.KeyboardModifier.ControlModifier)  # Ctrl+click picks
    assert w.instances.selected_ids == [ann.id]
    assert w.labeler.prompt.is_empty                     # picking is not a prompt
    key(qtbot, w, Qt.Key.Key_Delete)
    assert w.project.annotations(ids[0]) == []
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert [a.id for a in w.project.annotations(ids[0])] == [ann.id]
    w.shutdown()


def test_zoom_at_cursor_pan_and_fit(qtbot, image_folder, settings_path):
    w = open_window(qtbot, image_folder, None, settings_path)
    c = w.canvas
    fitted = c.zoom
    anchor = c.image_to_view(40, 48)       # off-centre in x; y = middle (the image is wide)
    pinned = c.mapToScene(anchor)
    event = QWheelEvent(QPointF(anchor), QPointF(c.viewport().mapToGlobal(anchor)), QPoint(0, 0),
                        QPoint(0, 360), Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(c.viewport(), event)
    assert c.zoom == pytest.approx(fitted * 1.15 ** 3)
    under = c.mapToScene(anchor)                         # the pixel under the cursor stays
    assert abs(under.x() - pinned.x()) < 0.5 and abs(under.y() - pinned.y()) < 0.5
    before = c.mapToScene(QPoint(10, 10))
    viewport = c.viewport()
    qtbot.mousePress(viewport, Qt.MouseButton.MiddleButton, pos=QPoint(100, 100))
    qtbot.mouseMove(viewport, QPoint(60, 70))
    qtbot.mouseRelease(viewport, Qt.MouseButton.MiddleButton, pos=QPoint(60, 70))
    after = c.mapToScene(QPoint(10, 10))
    assert after != before                               # the view moved
    assert w.labeler.prompt.is_empty                     # panning is not a prompt
    # Space + left drag pans too, and is not a box
    before = c.mapToScene(QPoint(10, 10))
    qtbot.keyPress(c, Qt.Key.Key_Space)
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=QPoint(60, 70))
    qtbot.mouseMove(viewport, QPoint(120, 110))
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=QPoint(120, 110))
    qtbot.keyRelease(c, Qt.Key.Key_Space)
    assert c.mapToScene(QPoint(10, 10)) != before
    assert w.labeler.prompt.is_empty
    key(qtbot, w, Qt.Key.Key_F)
    assert c.zoom == pytest.approx(fitted)
    w.shutdown()


def test_text_and_auto_say_no_engine_installed(qtbot, image_folder, settings_path,
                                               classic_factory):
    w = open_window(qtbot, image_folder, classic_factory, settings_path)
    assert w.text_field.placeholderText() == "no text engine installed"
    # the image's own "ready" status would otherwise race with (and replace) the message
    qtbot.waitUntil(lambda: w.images.state(w.image_id) == "ready", timeout=WAIT_MS)
    QApplication.processEvents()
    w.text_field.setFocus()
    for k in "cat":                       # letters and Enter belong to the field, not to
        qtbot.keyClick(w.text_field, k, delay=1)    # the window's shortcuts (C, A, Enter)
    qtbot.keyClick(w.text_field, Qt.Key.Key_Return, delay=1)
    QApplication.processEvents()
    assert w.text_field.text() == "cat" and w.image_id == w.images.image_ids[0]
    assert "no text engine installed" in w.statusBar().currentMessage()
    qtbot.keyClick(w.text_field, Qt.Key.Key_Escape, delay=1)
    assert w.text_field.text() == ""
    # Auto is disabled and its tooltip says what to install; its key still says why
    assert not w.auto_button.isEnabled()
    assert "no proposal engine installed" in w.auto_button.toolTip()
    key(qtbot, w, Qt.Key.Key_G)
    assert "no proposal engine installed" in w.statusBar().currentMessage()
    w.shutdown()


def test_settings_persist_geometry_tools_and_last_image(qtbot, image_folder, settings_path):
    # a plain resolver: it cannot say that hq-sam is missing, so Fine edges stays live
    # (with the Router and no hq-sam it is disabled: test_gui_honest.py)
    from engines.classic.engine import ClassicEngine
    from gui_helpers import single_engine_factory
    classic_factory = single_engine_factory(ClassicEngine(), "classic")
    w = open_window(qtbot, image_folder, classic_factory, settings_path)
    w.resize(700, 520)
    w.fine_edges.setChecked(True)
    assert w.labeler.service.fine_edges
    key(qtbot, w, Qt.Key.Key_D)
    second = w.image_id
    w.close()                                            # closeEvent saves and shuts down
    assert settings_path.exists()
    w2 = open_window(qtbot, image_folder, classic_factory, settings_path)
    assert w2.fine_edges.isChecked() and w2.image_id == second
    assert (w2.width(), w2.height()) == (700, 520)
    w2.shutdown()
    assert open_settings(settings_path).value("export/format", "coco") == "coco"


@pytest.mark.parametrize("name", list(FORMATS))
def test_export_every_format(tmp_path, image_folder, name):
    with app.open_target(image_folder) as project:
        cat = project.add_category("thing")
        img = project.images()[0]
        mask = np.zeros((img.height, img.width), bool)
        mask[20:70, 30:80] = True
        project.add_annotation(img.id, cat.id, mask, engine="classic")
        out = tmp_path / ("out.json" if FORMATS[name].output == "file" else "out")
        written = export_project(project, name, out)
        assert written and all(p.exists() for p in written)
        back = FORMATS[name].read(out, project.image_root)
        assert len(back.annotations) == 1


def test_export_dialog_reports_a_bad_target_and_stays_open(qtbot, image_folder, tmp_path,
                                                           monkeypatch):
    from PySide6.QtWidgets import QMessageBox
    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: shown.append(a[2]))
    with app.open_target(image_folder) as project:
        dialog = ExportDialog(project)
        qtbot.addWidget(dialog)
        blocker = tmp_path / "file"
        blocker.write_text("x")
        dialog.format.setCurrentIndex(dialog.format.findData("yolo"))
        assert dialog.tolerance.isEnabled()
        dialog.out.setText(str(blocker / "sub"))          # a folder under a file
        dialog.accept()
        assert shown and dialog.result() == 0 and not dialog.written


def test_gui_command_registers_its_options():
    from annotator.commands import gui
    parser = argparse.ArgumentParser()
    gui.register(parser.add_subparsers())
    args = parser.parse_args(["gui", "some/folder", "--device", "cpu", "--models-dir", "m"])
    assert (args.target, args.device, args.models_dir) == ("some/folder", "cpu", "m")
    assert args.func is gui.run


def test_an_image_deleted_on_disk_is_reported_not_fatal(qtbot, image_folder, settings_path,
                                                        classic_factory):
    w = open_window(qtbot, image_folder, classic_factory, settings_path)
    (image_folder / "img1.png").unlink()
    key(qtbot, w, Qt.Key.Key_D)
    assert "img1.png" in w.statusBar().currentMessage()
    assert w.image_id is None and w.canvas.image_size is None
    click(qtbot, w, 10, 10)                               # no image: clicks do nothing
    assert w.labeler.prompt.is_empty
    w.show_image(w.images.image_ids[2])
    click(qtbot, w, 30, 30)
    wait_preview(qtbot, w)
    w.shutdown()
