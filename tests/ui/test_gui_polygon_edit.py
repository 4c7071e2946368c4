"""Polygon editing of an accepted instance through real mouse/key events on the canvas:
vertex drag / insert / delete, each one undoable; the detail slider changes the drawn
polygon only, never the stored mask."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from annotator.core import commands as cmd
from annotator.core.geometry import rle_to_mask
from annotator.ui import polygon_edit

from gui_helpers import click, key, open_window

CTRL, SHIFT = Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.ShiftModifier


def stored(w, ann_id) -> str:
    """The store's RLE of an annotation, as exact text."""
    return json.dumps(w.project.annotation(ann_id).rle, sort_keys=True)


def add_instance(qtbot, w, mask) -> int:
    """An accepted instance (pushed like Enter does), selected with a real Ctrl+click."""
    category = w.add_class("blob")
    ann_id = w._push(cmd.AddAnnotation(w.image_id, category, mask)).annotation_id
    ys, xs = np.nonzero(mask)
    k = len(xs) // 3                                   # a pixel of the mask (not a hole)
    click(qtbot, w, float(xs[k]) + 0.5, float(ys[k]) + 0.5, modifier=CTRL)
    assert w.instances.selected_ids == [ann_id]
    qtbot.waitUntil(lambda: w.polygons.ann_id == ann_id and w.polygons.handles_shown)
    return ann_id


def disk(h=96, w=128, cx=64, cy=48, r=30):
    yy, xx = np.mgrid[:h, :w]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r


def square(h=96, w=128):
    m = np.zeros((h, w), bool)
    m[20:70, 30:80] = True
    return m


def press_drag_release(qtbot, w, x0, y0, x1, y1):
    viewport, c = w.canvas.viewport(), w.canvas
    a, b = c.image_to_view(x0, y0), c.image_to_view(x1, y1)
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=a)
    qtbot.mouseMove(viewport, (a + b) / 2)
    qtbot.mouseMove(viewport, b)
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=b)
    QApplication.processEvents()


def test_detail_slider_changes_vertices_not_the_mask(qtbot, image_folder, settings_path):
    w = open_window(qtbot, image_folder, None, settings_path)
    ann_id = add_instance(qtbot, w, disk())
    before, history = stored(w, ann_id), w.stack.undo_text
    w.detail.set_tolerance(0)
    exact = w.polygons.vertex_count
    assert w.polygons.polygons and "exact" in w.detail.label.text()
    for _ in range(6):                                # the , key: coarser
        key(qtbot, w, Qt.Key.Key_Comma)
    assert w.detail.tolerance == pytest.approx(3.0)
    coarse = w.polygons.vertex_count
    assert 3 <= coarse < exact / 4
    w.detail.slider.setFocus()                        # keyboard on the slider itself
    qtbot.keyClick(w.detail.slider, Qt.Key.Key_Home)
    assert w.detail.tolerance == 0 and w.polygons.vertex_count == exact
    assert stored(w, ann_id) == before                # the stored mask never moved
    assert w.stack.undo_text == history               # and nothing was pushed
    assert w.settings.value("tools/polygon_tolerance") is not None
    assert polygon_edit.MAX_HANDLES > exact           # handles for this one
    w.shutdown()


def test_drag_vertex_with_the_mouse_then_undo_redo(qtbot, image_folder, settings_path):
    w = open_window(qtbot, image_folder, None, settings_path)
    ann_id = add_instance(qtbot, w, disk())
    before = stored(w, ann_id)
    ed = w.polygons
    rings = ed.rings
    assert len(rings) == 1
    i = int(np.argmax(rings[0][:, 0]))                # the rightmost vertex
    x, y = ed.vertex(0, i)
    assert x <= 95
    press_drag_release(qtbot, w, x, y, x + 14, y)
    after = stored(w, ann_id)
    assert after != before
    mask = rle_to_mask(w.project.annotation(ann_id).rle)
    old = rle_to_mask(json.loads(before))
    assert mask[int(y), int(x) + 6] and not old[int(y), int(x) + 6]   # the new spike
    assert (mask | old).sum() - old.sum() > 10
    assert w.stack.undo_text == "Move polygon vertex"
    nx, ny = ed.vertex(0, i)                           # the vertex stays where it was put
    assert abs(nx - (x + 14)) < 0.6 and abs(ny - y) < 0.6
    assert w.labeler.prompt.is_empty                  # editing is not prompting

    key(qtbot, w, Qt.Key.Key_Z, CTRL)
    assert stored(w, ann_id) == before                # exactly the old mask
    qtbot.waitUntil(lambda: ed.vertex_count > 0 and max(r[:, 0].max() for r in ed.rings) < x + 1)
    key(qtbot, w, Qt.Key.Key_Z, CTRL | SHIFT)
    assert stored(w, ann_id) == after
    qtbot.waitUntil(lambda: abs(ed.vertex(0, i)[0] - (x + 14)) < 0.6)
    assert w.instances.selected_ids == [ann_id]
    w.shutdown()


def test_insert_and_delete_vertices(qtbot, image_folder, settings_path):
    w = open_window(qtbot, image_folder, None, settings_path)
    ann_id = add_instance(qtbot, w, square())
    ed = w.polygons
    original = stored(w, ann_id)
    assert ed.vertex_count == 4
    viewport, c = w.canvas.viewport(), w.canvas
    # double-click on the top edge: a fifth vertex there, one undoable step
    qtbot.mouseDClick(viewport, Qt.MouseButton.LeftButton, pos=c.image_to_view(55, 20))
    QApplication.processEvents()
    assert ed.vertex_count == 5 and w.stack.undo_text == "Insert polygon vertex"
    assert w.labeler.prompt.is_empty
    ring, index = ed.selected
    vx, vy = ed.vertex(ring, index)
    assert abs(vx - 55) < 0.6 and abs(vy - 20) < 0.6
    key(qtbot, w, Qt.Key.Key_Z, CTRL)
    qtbot.waitUntil(lambda: ed.vertex_count == 4)
    key(qtbot, w, Qt.Key.Key_Z, CTRL | SHIFT)
    qtbot.waitUntil(lambda: ed.vertex_count == 5)
    # pull the new vertex up: the square grows a peak
    press_drag_release(qtbot, w, 55, 20, 55, 6)
    peaked = rle_to_mask(w.project.annotation(ann_id).rle)
    assert peaked[10, 55] and not peaked[10, 35]
    # right-click the peak away: the square is back, exactly
    qtbot.mouseClick(viewport, Qt.MouseButton.RightButton, pos=c.image_to_view(55, 6))
    QApplication.processEvents()
    assert ed.vertex_count == 4 and stored(w, ann_id) == original
    assert w.stack.undo_text == "Delete polygon vertex"
    # Alt+click on the left edge inserts; a click on a handle selects it; Delete removes it
    click(qtbot, w, 30, 45, modifier=Qt.KeyboardModifier.AltModifier)
    assert ed.vertex_count == 5
    click(qtbot, w, 30, 70)                            # select the bottom-left corner
    assert ed.selected is not None and ed.vertex(*ed.selected) == (30.0, 70.0)
    assert w.labeler.prompt.is_empty
    key(qtbot, w, Qt.Key.Key_Delete)                   # a triangle-ish cut, instance stays
    assert [a.id for a in w.project.annotations(w.image_id)] == [ann_id]
    cut = rle_to_mask(w.project.annotation(ann_id).rle)
    assert not cut[68, 32] and cut[25, 75]
    assert ed.vertex_count == 4
    key(qtbot, w, Qt.Key.Key_Z, CTRL)                  # back to five vertices' mask
    assert rle_to_mask(w.project.annotation(ann_id).rle)[68, 32]
    # with no vertex selected, Delete removes the instance as before
    assert ed.selected is None
    key(qtbot, w, Qt.Key.Key_Delete)
    assert w.project.annotations(w.image_id) == []
    qtbot.waitUntil(lambda: ed.ann_id is None)
    w.shutdown()


def test_handles_keep_screen_size_and_are_capped(qtbot, image_folder, settings_path,
                                                 monkeypatch):
    w = open_window(qtbot, image_folder, None, settings_path)
    ann_id = add_instance(qtbot, w, disk())
    ed, c = w.polygons, w.canvas
    x, y = ed.vertex(0, 0)
    click(qtbot, w, x, y)                              # selects it: drawn red
    assert ed.selected == (0, 0)

    def red_pixels() -> int:
        QApplication.processEvents()
        image = c.viewport().grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
        rgb = np.frombuffer(image.constBits(), np.uint8).reshape(
            image.height(), image.bytesPerLine())[:, :3 * image.width()].reshape(
            image.height(), image.width(), 3)
        return int(np.all(rgb == (255, 60, 60), axis=2).sum())

    side = 2 * polygon_edit.HANDLE_PX
    fitted = red_pixels()
    c.zoom_by(3.0)
    c.centerOn(x, y)
    zoomed = red_pixels()
    assert (side - 2) ** 2 <= fitted <= (side + 1) ** 2   # a handle's size in screen pixels
    assert abs(zoomed - fitted) <= 2 * side               # ... whatever the zoom
    # too many vertices: outline only, a hint, and a press is a prompt again
    monkeypatch.setattr(polygon_edit, "MAX_HANDLES", 3)
    w.detail.set_tolerance(0.5)
    assert not ed.handles_shown and ed.vertex_count > 3
    assert "tolerance" in w.statusBar().currentMessage()
    before = stored(w, ann_id)
    x, y = ed.vertex(0, 0)
    c.fit()
    press_drag_release(qtbot, w, x, y, x + 10, y)
    assert stored(w, ann_id) == before
    w.shutdown()


def test_refused_edit_changes_nothing(qtbot, image_folder, settings_path):
    w = open_window(qtbot, image_folder, None, settings_path)
    m = np.zeros((96, 128), bool)
    m[40:44, 60:64] = True                             # 4 vertices, one part
    ann_id = add_instance(qtbot, w, m)
    before = stored(w, ann_id)
    ed = w.polygons
    ring, index = 0, 0
    while ed.vertex_count > 3:                         # down to a triangle
        ed.delete_vertex(ring, index)
    assert stored(w, ann_id) != before and w.stack.undo_text == "Delete polygon vertex"
    triangle, history = stored(w, ann_id), w.stack.undo_text
    assert ed.delete_vertex(0, 0) is False             # the last part keeps 3 vertices
    assert "3 vertices" in w.statusBar().currentMessage()
    assert ed.vertex_count == 3
    # collapsing the triangle onto a line would leave an empty mask: refused
    assert ed.move_vertex(0, 0, *ed.vertex(0, 1)) is False
    assert "empty" in w.statusBar().currentMessage()
    assert stored(w, ann_id) == triangle and w.stack.undo_text == history
    assert ed.vertex_count == 3                        # the outline shown again as stored
    w.shutdown()


def test_hole_vertices_edit_the_hole(qtbot, image_folder, settings_path):
    w = open_window(qtbot, image_folder, None, settings_path)
    m = square()
    m[35:55, 45:65] = False                            # a square hole
    ann_id = add_instance(qtbot, w, m)
    ed, viewport, c = w.polygons, w.canvas.viewport(), w.canvas
    assert [len(r) for r in ed.rings] == [4, 4]
    qtbot.mouseClick(viewport, Qt.MouseButton.RightButton, pos=c.image_to_view(45, 35))
    QApplication.processEvents()
    assert [len(r) for r in ed.rings] == [4, 3]
    assert not rle_to_mask(w.project.annotation(ann_id).rle)[50, 60]   # still a hole there
    qtbot.mouseClick(viewport, Qt.MouseButton.RightButton, pos=c.image_to_view(65, 55))
    QApplication.processEvents()
    assert [len(r) for r in ed.rings] == [4]           # a 2-vertex hole is no hole
    assert stored(w, ann_id) == json.dumps(w.project.annotation(ann_id).rle, sort_keys=True)
    assert rle_to_mask(w.project.annotation(ann_id).rle)[20:70, 30:80].all()
    key(qtbot, w, Qt.Key.Key_Z, CTRL)
    key(qtbot, w, Qt.Key.Key_Z, CTRL)
    assert np.array_equal(rle_to_mask(w.project.annotation(ann_id).rle), m)
    qtbot.waitUntil(lambda: [len(r) for r in ed.rings] == [4, 4])
    w.shutdown()
