"""The smaller ones, through real events: instance numbers per image, the selected class
remembered per project, deleting a class (annotations moved or deleted, undoable),
reordering classes, messages without internal paths, the hint strip following the tool."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from annotator.core import commands as cmd
from annotator.ui import class_edit, hints

from gui_helpers import WAIT_MS, click, key, open_window, wait_preview

CTRL = Qt.KeyboardModifier.ControlModifier


def square(h, w, box):
    m = np.zeros((h, w), bool)
    m[box[1]:box[3], box[0]:box[2]] = True
    return m


def button(panel, text) -> QPushButton:
    return next(b for b in panel.findChildren(QPushButton) if b.text() == text)


def test_instance_numbers_run_per_image(qtbot, image_folder, settings_path, classic_factory):
    w = open_window(qtbot, image_folder, classic_factory, settings_path)
    cat = w.add_class("box")
    first, second = w.images.image_ids[:2]
    for _ in range(2):
        w._push(cmd.AddAnnotation(first, cat, square(96, 128, (10, 10, 30, 30))))
    key(qtbot, w, Qt.Key.Key_D)                              # the next image
    assert w.image_id == second
    w._push(cmd.AddAnnotation(second, cat, square(96, 128, (10, 10, 30, 30))))
    qtbot.waitUntil(lambda: w.instances.list.count() == 1, timeout=WAIT_MS)
    assert w.instances.list.item(0).text().startswith("#1 box")
    key(qtbot, w, Qt.Key.Key_A)
    qtbot.waitUntil(lambda: w.instances.list.count() == 2, timeout=WAIT_MS)
    texts = [w.instances.list.item(i).text() for i in range(2)]
    assert texts[0].startswith("#2 ") and texts[1].startswith("#1 ")     # topmost first


def test_selected_class_and_order_are_remembered_per_project(qtbot, image_folder,
                                                             settings_path, classic_factory):
    w = open_window(qtbot, image_folder, classic_factory, settings_path)
    for name in ("car", "tree", "sky"):
        w.add_class(name)
    key(qtbot, w, Qt.Key.Key_2)
    assert w.classes.current.name == "tree"
    qtbot.mouseClick(button(w.classes, "▲"), Qt.MouseButton.LeftButton)   # tree to the top
    assert [c.name for c in w.classes.categories] == ["tree", "car", "sky"]
    key(qtbot, w, Qt.Key.Key_3)                           # digit keys follow the list
    assert w.classes.current.name == "sky"
    w.close()
    again = open_window(qtbot, image_folder, classic_factory, settings_path)
    assert again.classes.current.name == "sky"
    assert [c.name for c in again.classes.categories] == ["tree", "car", "sky"]


def test_delete_class_moves_or_deletes_its_annotations_undoably(qtbot, image_folder,
                                                                settings_path, classic_factory,
                                                                monkeypatch):
    w = open_window(qtbot, image_folder, classic_factory, settings_path)
    car, tree = w.add_class("car"), w.add_class("tree")
    a = w._push(cmd.AddAnnotation(w.image_id, tree, square(96, 128, (10, 10, 30, 30))))
    other = w.images.image_ids[1]
    b = w._push(cmd.AddAnnotation(other, tree, square(96, 128, (40, 40, 60, 60))))
    asked = []

    def choose(_w, name, used, others):
        asked.append((name, used, [c.name for c in others]))
        return True, car
    monkeypatch.setattr(class_edit, "choose_fate", choose)
    w.classes.select_id(tree)
    qtbot.mouseClick(button(w.classes, "Delete…"), Qt.MouseButton.LeftButton)
    assert asked == [("tree", 2, ["car"])]
    assert [c.name for c in w.project.categories()] == ["car"]
    assert {w.project.annotation(i).category_id for i in (a.annotation_id, b.annotation_id)} \
        == {car}
    assert "moved to car" in w.statusBar().currentMessage()
    qtbot.waitUntil(lambda: [c.name for c in w.classes.categories] == ["car"], timeout=WAIT_MS)
    key(qtbot, w, Qt.Key.Key_Z, CTRL)                      # one step brings all back
    assert [c.name for c in w.project.categories()] == ["car", "tree"]
    assert w.project.annotation(b.annotation_id).category_id == tree

    monkeypatch.setattr(class_edit, "choose_fate", lambda *_a: (True, None))
    w.classes.select_id(tree)
    qtbot.mouseClick(button(w.classes, "Delete…"), Qt.MouseButton.LeftButton)
    assert [c.name for c in w.project.categories()] == ["car"]
    assert w.project.annotations() == []
    assert "2 annotations deleted" in w.statusBar().currentMessage()
    key(qtbot, w, Qt.Key.Key_Z, CTRL)
    assert len(w.project.annotations()) == 2
    key(qtbot, w, Qt.Key.Key_Z, CTRL | Qt.KeyboardModifier.ShiftModifier)      # redo
    assert w.project.annotations() == []


def test_messages_do_not_show_the_database_path(qtbot, image_folder, settings_path,
                                                classic_factory):
    w = open_window(qtbot, image_folder, classic_factory, settings_path)
    ann = w._push(cmd.AddAnnotation(w.image_id, w.add_class("box"),
                                    square(96, 128, (10, 10, 30, 30))))
    w.instances.select([ann.annotation_id])
    key(qtbot, w, Qt.Key.Key_K)                          # one part: cannot be split
    message = w.statusBar().currentMessage()
    assert message.startswith("not done") and str(w.project.path) not in message
    assert str(w.project.path.parent) not in message


def test_hint_strip_follows_the_tool(qtbot, image_folder, settings_path, classic_factory):
    w = open_window(qtbot, image_folder, classic_factory, settings_path)

    def shown(state):
        qtbot.waitUntil(lambda: w.hint.text().strip() == hints.HINTS[state], timeout=WAIT_MS)
    shown("idle")
    click(qtbot, w, 55, 45)
    shown("prompting")
    wait_preview(qtbot, w)
    key(qtbot, w, Qt.Key.Key_Return)
    shown("idle")
    (ann,) = w.project.annotations(w.image_id)
    qtbot.waitUntil(lambda: w.canvas.instance_ids == [ann.id], timeout=WAIT_MS)
    click(qtbot, w, 55, 45)                               # a plain click selects it
    shown("instance")
    key(qtbot, w, Qt.Key.Key_B)
    shown("brush")
    key(qtbot, w, Qt.Key.Key_E)
    shown("eraser")
    key(qtbot, w, Qt.Key.Key_Escape)
    shown("instance")
    w.instances.select([])
    shown("idle")


def test_hint_strip_for_candidates_and_tab_with_one(qtbot, image_folder, settings_path):
    from PySide6.QtWidgets import QApplication

    from annotator.core.dataset import CandidateRecord
    from annotator.core.geometry import mask_to_rle
    w = open_window(qtbot, image_folder, None, settings_path)
    (cand,) = w.project.add_candidates(w.image_id, [CandidateRecord(
        id=0, image_id=w.image_id, rle=mask_to_rle(square(96, 128, (20, 20, 100, 70))),
        score=0.9, engine="test")])
    w._flush()
    QApplication.processEvents()
    qtbot.waitUntil(lambda: w.canvas.candidates is not None
                    and bool(w.canvas.candidates.entries), timeout=WAIT_MS)
    key(qtbot, w, Qt.Key.Key_Tab)                           # selects the only candidate
    assert w.review.selected == cand.id
    qtbot.waitUntil(lambda: w.hint.text().strip() == hints.HINTS["review"], timeout=WAIT_MS)
    key(qtbot, w, Qt.Key.Key_Tab)
    assert w.statusBar().currentMessage() == "only one candidate on this image"
    w.shutdown()
