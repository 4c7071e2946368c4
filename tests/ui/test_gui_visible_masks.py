"""Masks you can see, through real events: fill + outline + contrasting ring, the fill
opacity from View (remembered), a distinguishable palette, the preview's marching ants,
the brush circle, thinned polygon handles, the zoom in the status bar and short-lived
confirmations of accept / review / delete / merge."""
from __future__ import annotations

import itertools

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication

from annotator.core import commands as cmd
from annotator.ui import polygon_edit
from annotator.ui.candidate_layer import CANDIDATE_COLOR, SELECTED_COLOR
from annotator.ui.category_panel import PALETTE, category_color
from annotator.ui.mask_style import contrast_color, fill_alpha

from gui_helpers import WAIT_MS, click, key, open_window, wait_preview

CTRL = Qt.KeyboardModifier.ControlModifier


def square(h=96, w=128, box=(30, 20, 80, 70)):
    m = np.zeros((h, w), bool)
    m[box[1]:box[3], box[0]:box[2]] = True
    return m


def pixel(w, ann_id, x, y) -> QColor:
    """The colour the canvas paints for instance `ann_id` at image pixel (x, y)."""
    item = w.canvas._instances[ann_id]
    off = item.offset()
    return item.pixmap().toImage().pixelColor(int(x - off.x()), int(y - off.y()))


def test_accepted_mask_has_fill_outline_and_contrasting_ring(qtbot, image_folder,
                                                             settings_path, classic_factory):
    w = open_window(qtbot, image_folder, classic_factory, settings_path)
    click(qtbot, w, 55, 45)
    wait_preview(qtbot, w)
    ants = w.canvas.preview_outline              # the preview: marching ants, not a solid edge
    assert ants is not None
    offset = ants.offset
    qtbot.waitUntil(lambda: ants.offset != offset, timeout=WAIT_MS)
    key(qtbot, w, Qt.Key.Key_Return)
    assert "accepted as object" in w.statusBar().currentMessage()
    assert w.canvas.preview_outline is None
    (ann,) = w.project.annotations(w.image_id)
    qtbot.waitUntil(lambda: w.canvas.instance_ids == [ann.id], timeout=WAIT_MS)
    color = category_color(w.project.category(ann.category_id))
    inside, edge, ring = pixel(w, ann.id, 55, 45), pixel(w, ann.id, 30, 45), \
        pixel(w, ann.id, 29, 45)
    assert inside.alpha() == fill_alpha(w.canvas.fill_percent)
    assert (edge.red(), edge.green(), edge.blue(), edge.alpha()) == \
        (color.red(), color.green(), color.blue(), 255)
    expected = contrast_color(color)
    assert (ring.red(), ring.green(), ring.blue()) == \
        (expected.red(), expected.green(), expected.blue()) and ring.alpha() > 150


def test_fill_opacity_from_view_menu_is_remembered(qtbot, image_folder, settings_path,
                                                   classic_factory):
    w = open_window(qtbot, image_folder, classic_factory, settings_path)
    ann_id = w._push(cmd.AddAnnotation(w.image_id, w.add_class("box"), square())).annotation_id
    qtbot.waitUntil(lambda: w.canvas.instance_ids == [ann_id], timeout=WAIT_MS)
    assert w.fill_menu.title() == "Mask fill" and w.fill_menu in \
        [a.menu() for a in w.menus["View"].actions() if a.menu()]
    w.fill_actions[70].trigger()
    assert w.fill_actions[70].isChecked() and not w.fill_actions[35].isChecked()
    assert pixel(w, ann_id, 55, 45).alpha() == fill_alpha(70)
    w.fill_actions[0].trigger()                    # outline only: no fill, edge still there
    assert pixel(w, ann_id, 55, 45).alpha() == 0 and pixel(w, ann_id, 30, 45).alpha() == 255
    w.fill_actions[50].trigger()
    w.close()
    again = open_window(qtbot, image_folder, classic_factory, settings_path)
    assert again.canvas.fill_percent == 50 and again.fill_actions[50].isChecked()


def _lab(hex_color):
    c = QColor(hex_color)
    rgb = np.array([c.redF(), c.greenF(), c.blueF()])
    lin = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                    [0.0193, 0.1192, 0.9505]]) @ lin / np.array([0.9505, 1.0, 1.089])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_palette_is_distinguishable_and_saturated():
    labs = [_lab(c) for c in PALETTE]
    # neighbours (classes 1, 2, 3...) are far apart; no two colours are near twins
    assert min(np.linalg.norm(a - b) for a, b in zip(labs, labs[1:])) > 50
    assert min(np.linalg.norm(a - b) for a, b in itertools.combinations(labs, 2)) > 20
    for reserved in (CANDIDATE_COLOR.name(), SELECTED_COLOR.name()):
        assert min(np.linalg.norm(_lab(reserved) - lab) for lab in labs) > 30
    for hex_color in PALETTE:          # vivid: no browns, greys or pastels
        assert QColor(hex_color).hsvSaturation() > 180 and QColor(hex_color).value() > 180


def test_brush_circle_follows_the_cursor_and_its_size(qtbot, image_folder, settings_path,
                                                      classic_factory):
    w = open_window(qtbot, image_folder, classic_factory, settings_path)
    ann_id = w._push(cmd.AddAnnotation(w.image_id, w.add_class("box"), square())).annotation_id
    click(qtbot, w, 55, 45, modifier=CTRL)
    assert w.instances.selected_ids == [ann_id]
    assert w.canvas.brush_circle is None
    key(qtbot, w, Qt.Key.Key_B)
    w.raise_()                       # on top of any window an earlier test left open
    w.activateWindow()
    viewport = w.canvas.viewport()
    qtbot.mouseMove(viewport, w.canvas.image_to_view(41, 31))
    qtbot.mouseMove(viewport, w.canvas.image_to_view(40, 30))
    qtbot.waitUntil(lambda: w.canvas.brush_circle is not None, timeout=WAIT_MS)
    circle = w.canvas.brush_circle
    assert abs(circle.pos().x() - 40) < 1.5 and abs(circle.pos().y() - 30) < 1.5
    assert circle.rect().width() == 2 * w.brush.radius
    qtbot.mouseMove(viewport, w.canvas.image_to_view(90, 60))
    assert abs(circle.pos().x() - 90) < 1.5 and abs(circle.pos().y() - 60) < 1.5
    before = w.brush.radius
    key(qtbot, w, Qt.Key.Key_BracketRight)
    assert w.brush.radius > before and circle.rect().width() == 2 * w.brush.radius
    key(qtbot, w, Qt.Key.Key_E)                     # eraser: a dashed red circle
    assert w.canvas.mode == "eraser" and w.canvas.brush_circle is not None
    qtbot.mouseMove(viewport, w.canvas.image_to_view(60, 40))
    assert w.canvas.brush_circle.pen().style() == Qt.PenStyle.DashLine
    key(qtbot, w, Qt.Key.Key_Escape)
    assert w.canvas.mode == "prompt" and w.canvas.brush_circle is None


def test_zoom_percentage_in_the_status_bar(qtbot, image_folder, settings_path,
                                           classic_factory):
    w = open_window(qtbot, image_folder, classic_factory, settings_path)
    assert w.zoom_label.text() == f"{w.canvas.zoom * 100:.0f}%"
    before = w.canvas.zoom
    key(qtbot, w, Qt.Key.Key_Plus, CTRL)
    assert w.canvas.zoom > before
    assert w.zoom_label.text() == f"{w.canvas.zoom * 100:.0f}%"
    key(qtbot, w, Qt.Key.Key_F)
    assert w.zoom_label.text() == f"{before * 100:.0f}%"


def test_spaced_keeps_handles_apart_on_screen():
    vx = np.arange(0, 20, 1.0)                     # twenty vertices one pixel apart
    keep = polygon_edit.spaced(vx, np.zeros_like(vx), [0])
    kept = vx[keep]
    assert keep[0] and 1 < keep.sum() < len(vx)
    assert np.diff(kept).min() >= polygon_edit.SPACING_PX
    far = np.arange(0, 200, 20.0)                  # far apart: every handle
    assert polygon_edit.spaced(far, np.zeros_like(far), [0]).all()


def test_exact_detail_thins_handles_and_zoom_brings_them_back(qtbot, image_folder,
                                                              settings_path, classic_factory):
    w = open_window(qtbot, image_folder, classic_factory, settings_path)
    yy, xx = np.mgrid[:96, :128]
    disk = (xx + 0.5 - 64) ** 2 + (yy + 0.5 - 48) ** 2 <= 40 * 40
    ann_id = w._push(cmd.AddAnnotation(w.image_id, w.add_class("disk"), disk)).annotation_id
    click(qtbot, w, 64, 48, modifier=CTRL)
    w.detail.set_tolerance(0)                       # exact: every pixel corner a vertex
    qtbot.waitUntil(lambda: w.polygons.ann_id == ann_id and w.polygons.handles_shown,
                    timeout=WAIT_MS)
    w.canvas.fit()
    w.canvas.viewport().grab()                      # paint now
    total = w.polygons.vertex_count

    assert 0 < w.polygons.drawn_handles < total     # thinned out on screen
    # a drawn handle can be grabbed and dragged
    (ring,) = w.polygons.rings
    vx, vy = w.polygons._view_xy(ring)
    keep = polygon_edit.spaced(vx, vy, [0])
    i = int(np.flatnonzero(keep)[len(np.flatnonzero(keep)) // 2])
    x, y = ring[i]
    before = w.project.annotation(ann_id).rle
    viewport, c = w.canvas.viewport(), w.canvas
    a, b = c.image_to_view(x, y), c.image_to_view(x + 3, y + 3)
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=a)
    qtbot.mouseMove(viewport, b)
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=b)
    QApplication.processEvents()
    assert w.project.annotation(ann_id).rle != before and w.stack.can_undo
    assert "vertex" in w.undo_action.text().lower()
    thinned = w.polygons.drawn_handles
    for _ in range(6):
        key(qtbot, w, Qt.Key.Key_Plus, CTRL)
    w.canvas.viewport().grab()
    assert w.polygons.drawn_handles > thinned or w.polygons.drawn_handles == total


def test_confirmations_for_review_delete_and_merge(qtbot, image_folder, settings_path,
                                                   classic_factory):
    w = open_window(qtbot, image_folder, classic_factory, settings_path)
    cat = w.add_class("box")
    a = w._push(cmd.AddAnnotation(w.image_id, cat, square(box=(10, 10, 30, 30)))).annotation_id
    b = w._push(cmd.AddAnnotation(w.image_id, cat, square(box=(60, 50, 90, 80)))).annotation_id
    key(qtbot, w, Qt.Key.Key_R)
    assert "marked reviewed" in w.statusBar().currentMessage()
    key(qtbot, w, Qt.Key.Key_R)
    assert "marked not reviewed" in w.statusBar().currentMessage()
    w.instances.select([a, b])
    key(qtbot, w, Qt.Key.Key_M)
    assert w.statusBar().currentMessage() == "merged 2 instances into one"
    assert len(w.project.annotations(w.image_id)) == 1
    w.instances.select([a])
    key(qtbot, w, Qt.Key.Key_Delete)
    assert w.statusBar().currentMessage().startswith("deleted 1 instance")
    assert w.project.annotations(w.image_id) == []
    # confirmations are short-lived: the status bar does not go stale
    qtbot.waitUntil(lambda: w.statusBar().currentMessage() == "", timeout=WAIT_MS)
