"""The image canvas: a QGraphicsView whose scene coordinates are image pixels.

It draws the image, the accepted instances (one tinted pixmap per instance, cropped to its
box), the preview mask and the prompt markers, and turns gestures into signals in image
coordinates: left click = object point, right click or Shift+left = background point,
left drag = box, Ctrl+left = pick the instance under the cursor. Masks are drawn as
mask_style.py says (fill, outline, contrasting ring; the preview with marching ants);
in brush/eraser mode a circle of the brush's size follows the cursor. Pending candidates are
drawn by one CandidateLayer; `click_filter(x, y)` may claim a plain left click (selecting
a candidate or an instance, picking.py) before it becomes a point. Wheel zooms at the cursor;
middle drag or Space+left drag pans.
"""
from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QCursor, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (QGraphicsEllipseItem, QGraphicsPathItem,
                               QGraphicsPixmapItem, QGraphicsRectItem, QGraphicsScene,
                               QGraphicsView)

from annotator.ui.candidate_layer import CandidateLayer, Entry, outline_path, shape_of
from annotator.ui.mask_style import DEFAULT_FILL, PREVIEW_FILL, contrast_color, fill_alpha
from annotator.ui.overlays import ANTS_MS, AntsItem, brush_circle_item, style_brush_circle
from annotator.ui.targets import CANDIDATE

DRAG_PIXELS = 5            # a press that moves less than this (view pixels) is a click
ZOOM_STEP = 1.15           # per wheel notch
MIN_ZOOM, MAX_ZOOM = 0.02, 64.0
Z_IMAGE, Z_ANNOTATION, Z_PREVIEW, Z_PROMPT = 0, 10, 20, 30
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def rgb_to_pixmap(rgb: np.ndarray) -> QPixmap:
    """An H x W x 3 uint8 array as a QPixmap. The QImage only views the array (kept alive
    here) while the pixmap is made: a huge photo is copied once, not twice."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QPixmap.fromImage(QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888))


def mask_pixmap(mask: np.ndarray, color: QColor, fill_alpha: int, edge_alpha: int = 255,
                halo: bool = True) -> tuple[QPixmap, int, int] | None:
    """A tinted, cropped picture of a mask with an opaque outline and, with `halo`, a
    contrasting ring around it (mask_style.py): (pixmap, x0, y0), or None for an empty
    mask. Cropping keeps memory proportional to the object."""
    rows = np.any(mask, axis=1)
    if not rows.any():
        return None
    cols = np.any(mask, axis=0)
    y0, y1 = int(np.argmax(rows)), len(rows) - int(np.argmax(rows[::-1]))
    x0, x1 = int(np.argmax(cols)), len(cols) - int(np.argmax(cols[::-1]))
    return _tinted(mask[y0:y1, x0:x1], x0, y0, color, fill_alpha, edge_alpha, halo)


def _tinted(crop: np.ndarray, x0: int, y0: int, color: QColor, fill_alpha: int,
            edge_alpha: int = 255, halo: bool = True) -> tuple[QPixmap, int, int]:
    """The picture of a mask cropped to its box at (x0, y0): fill, an outline where a
    pixel has a 4-neighbour outside the mask (the box's border counts as outside), and
    the halo one pixel outside that (the picture grows by one pixel on each side).

    One byte per pixel says which of the four it is, and an indexed QImage's colour table
    colours it (no per-pixel RGBA array in numpy: accepting 100 candidates stays fast)."""
    m = np.ascontiguousarray(crop, dtype=np.uint8)
    if halo:
        m = cv2.copyMakeBorder(m, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
        x0, y0 = x0 - 1, y0 - 1
    inner = cv2.erode(m, _CROSS, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    rgb = color.rgb() & 0xFFFFFF
    fill, edge = (fill_alpha << 24) | rgb, (edge_alpha << 24) | rgb
    if halo:      # 0 outside, 1 on the ring outside, 2 on the edge, 3 inside
        index = cv2.dilate(m, _CROSS)
        index += m
        index += inner
        ring = contrast_color(color).rgb() & 0xFFFFFF
        table = [0, (min(edge_alpha, 220) << 24) | ring, edge, fill]
    else:         # 0 outside, 1 inside, 2 on the edge
        index = m + m
        index -= inner
        table = [0, fill, edge]
    h, w = index.shape
    image = QImage(index.data, w, h, w, QImage.Format.Format_Indexed8)
    image.setColorTable(table)
    # converted (a copy) before `index` goes: the pixmap owns its pixels
    return QPixmap.fromImage(image.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)), \
        x0, y0


def crop_pixmap(crop, color: QColor, fill_alpha: int) -> tuple[QPixmap, int, int]:
    """`mask_pixmap` of a mask_cache.Crop: no search for the box, the crop is it."""
    return _tinted(crop.mask, crop.x0, crop.y0, color, fill_alpha)


class Canvas(QGraphicsView):
    point_clicked = Signal(float, float, int)          # x, y, label (1 object, 0 background)
    box_drawn = Signal(float, float, float, float)     # x0, y0, x1, y1
    pick_requested = Signal(float, float)              # Ctrl+click: select the instance here
    paint = Signal(float, float, str)                  # brush/eraser: x, y, start|move|end
    zoom_changed = Signal(float)                       # view pixels per image pixel
    mode_changed = Signal(str)                         # prompt | brush | eraser

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.NoDrag)
        self.setBackgroundBrush(QColor(40, 40, 40))
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self._image_item: QGraphicsPixmapItem | None = None
        self._instances: dict[int, QGraphicsPixmapItem] = {}
        self._preview: QGraphicsPixmapItem | None = None
        self._markers: list = []
        self._rubber: QGraphicsRectItem | None = None
        self._press: tuple[QPointF, Qt.MouseButton, Qt.KeyboardModifiers] | None = None
        self._pan_from: QPointF | None = None
        self._space = False
        self._fitted = True     # refit on resize until the user zooms or pans
        self.mode = "prompt"    # "prompt" | "brush" | "eraser" (left drag paints)
        self._painting = False
        self.editor = None      # PolygonEditor: gets the mouse first in prompt mode
        self.click_filter = None    # (x, y) -> True when a plain left click is taken
        self.candidates: CandidateLayer | None = None
        self.image_size: tuple[int, int] | None = None      # (H, W)
        self.message = ""       # shown instead of an image (empty folder, unreadable file)
        self.fill_percent = DEFAULT_FILL     # mask fill opacity (View ▸ Mask fill)
        self.brush_radius = 6                # image pixels: the circle at the cursor
        self._brush_circle: QGraphicsEllipseItem | None = None
        self._ants: QGraphicsPathItem | None = None     # the preview's moving outline
        self._ants_timer = QTimer(self)
        self._ants_timer.setInterval(ANTS_MS)
        self._ants_timer.timeout.connect(self._march)

    # -- content

    def set_image(self, rgb: np.ndarray) -> None:
        """Show a new image; every overlay of the previous one goes."""
        scene = self.scene()
        scene.clear()
        self.message = ""
        self._instances.clear()
        self._preview = self._rubber = self._brush_circle = self._ants = None
        self._ants_timer.stop()
        self._markers = []
        self._image_item = scene.addPixmap(rgb_to_pixmap(rgb))
        self.candidates = CandidateLayer(rgb.shape[1], rgb.shape[0])
        scene.addItem(self.candidates)
        self._image_item.setZValue(Z_IMAGE)
        self.image_size = rgb.shape[:2]
        scene.setSceneRect(QRectF(0, 0, rgb.shape[1], rgb.shape[0]))
        self.fit()

    def show_message(self, text: str) -> None:
        """No image: `text` in the middle of the canvas instead (why there is none)."""
        self.clear_image()
        self.message = text
        item = self.scene().addText(text)
        item.setDefaultTextColor(QColor(220, 220, 220))
        item.setTextWidth(520)
        self.resetTransform()
        self.scene().setSceneRect(item.boundingRect().adjusted(-20, -20, 20, 20))
        self.centerOn(item)

    def clear_image(self) -> None:
        self.message = ""
        self.scene().clear()
        self._instances.clear()
        self._image_item = self._preview = self._rubber = self._brush_circle = None
        self._ants = None
        self._ants_timer.stop()
        self.candidates = None
        self._markers = []
        self.image_size = None

    def set_instances(self, items: list[tuple[int, object, QColor, bool, bool]]) -> None:
        """Replace the drawn instances: (annotation id, mask_cache.Crop or None for an
        empty mask, colour, visible, selected), bottom first."""
        for item in self._instances.values():
            self.scene().removeItem(item)
        self._instances.clear()
        for z, (ann_id, crop, color, visible, selected) in enumerate(items):
            if crop is None:
                continue
            pixmap, x0, y0 = crop_pixmap(crop, color, fill_alpha(self.fill_percent, selected))
            item = self.scene().addPixmap(pixmap)
            item.setOffset(x0, y0)
            item.setZValue(Z_ANNOTATION + z * 1e-3)
            item.setVisible(visible)
            self._instances[ann_id] = item

    def update_instance(self, ann_id: int, mask: np.ndarray, color: QColor) -> None:
        """Redraw one instance in place (live brush strokes), drawn as selected."""
        old = self._instances.get(ann_id)
        z = old.zValue() if old is not None else Z_ANNOTATION
        visible = old.isVisible() if old is not None else True
        if old is not None:
            self.scene().removeItem(old)
            del self._instances[ann_id]
        made = mask_pixmap(mask, color, fill_alpha(self.fill_percent, True))
        if made is None:
            return
        pixmap, x0, y0 = made
        item = self.scene().addPixmap(pixmap)
        item.setOffset(x0, y0)
        item.setZValue(z)
        item.setVisible(visible)
        self._instances[ann_id] = item

    def set_candidates(self, entries: list[Entry], selected: int | None) -> None:
        if self.candidates is not None:
            self.candidates.set_entries(entries, selected)

    def set_candidate_threshold(self, threshold: float) -> None:
        if self.candidates is not None:
            self.candidates.set_threshold(threshold)

    def update_target(self, target, mask: np.ndarray, color: QColor) -> None:
        """Redraw what a tool is editing (targets.Target) in place, live."""
        if target.kind == CANDIDATE:
            if self.candidates is not None:
                self.candidates.replace_shape(target.id, shape_of(mask))
        else:
            self.update_instance(target.id, mask, color)

    def set_mode(self, mode: str) -> None:
        if mode not in ("prompt", "brush", "eraser"):
            raise ValueError(f"unknown canvas mode {mode!r}")
        self.mode = mode
        if mode == "prompt":
            self.viewport().unsetCursor()
        else:
            self.viewport().setCursor(Qt.CursorShape.CrossCursor)
        self._show_brush(self.viewport().mapFromGlobal(QCursor.pos()))
        self.mode_changed.emit(mode)

    # -- the brush circle (brush and eraser modes)

    def set_brush_radius(self, radius: int) -> None:
        self.brush_radius = int(radius)
        if self._brush_circle is not None:
            r = self.brush_radius
            self._brush_circle.setRect(QRectF(-r, -r, 2 * r, 2 * r))

    @property
    def brush_circle(self) -> QGraphicsEllipseItem | None:
        """The circle at the cursor while the brush or eraser is on (None otherwise)."""
        item = self._brush_circle
        return item if item is not None and item.isVisible() else None

    def _show_brush(self, view_pos) -> None:
        """The circle follows the cursor in brush/eraser mode, over the view only."""
        inside = self.mode != "prompt" and self.image_size is not None \
            and self.viewport().rect().contains(view_pos)
        if not inside:
            if self._brush_circle is not None:
                self._brush_circle.setVisible(False)
            return
        if self._brush_circle is None:
            self._brush_circle = brush_circle_item(self.brush_radius, Z_PROMPT + 1)
            self.scene().addItem(self._brush_circle)
        style_brush_circle(self._brush_circle, erasing=self.mode == "eraser")
        self._brush_circle.setPos(self.mapToScene(view_pos))
        self._brush_circle.setVisible(True)

    def leaveEvent(self, event) -> None:
        if self._brush_circle is not None:
            self._brush_circle.setVisible(False)
        super().leaveEvent(event)

    @property
    def instance_ids(self) -> list[int]:
        return list(self._instances)

    def instance_visible(self, ann_id: int) -> bool:
        item = self._instances.get(ann_id)
        return item is not None and item.isVisible()

    def set_preview(self, mask: np.ndarray | None, color: QColor) -> None:
        if self._preview is not None:
            self.scene().removeItem(self._preview)
            self._preview = None
        if self._ants is not None:
            self.scene().removeItem(self._ants)
            self._ants = None
        self._ants_timer.stop()
        if mask is None:
            return
        # the preview: a lighter fill without a solid edge, and marching ants around it
        alpha = int(fill_alpha(self.fill_percent) * PREVIEW_FILL) or 40
        made = mask_pixmap(mask, color, alpha, edge_alpha=0, halo=False)
        if made is not None:
            pixmap, x0, y0 = made
            self._preview = self.scene().addPixmap(pixmap)
            self._preview.setOffset(x0, y0)
            self._preview.setZValue(Z_PREVIEW)
            crop = mask[y0:y0 + pixmap.height(), x0:x0 + pixmap.width()]
            self._ants = AntsItem(outline_path(crop, x0, y0))
            self._ants.setZValue(Z_PREVIEW + 1)
            self.scene().addItem(self._ants)
            self._ants_timer.start()

    @property
    def preview_outline(self) -> "AntsItem | None":
        return self._ants

    def _march(self) -> None:
        if self._ants is None:
            self._ants_timer.stop()
        elif self.isVisible():
            self._ants.march()

    @property
    def preview_shown(self) -> bool:
        return self._preview is not None

    def set_prompt_marks(self, points: list[tuple[float, float]], labels: list[int],
                         box: tuple[float, float, float, float] | None) -> None:
        for item in self._markers:
            self.scene().removeItem(item)
        self._markers = []
        radius = 5.0   # screen pixels: the dots keep their size at every zoom
        for (x, y), label in zip(points, labels):
            color = QColor(40, 220, 60) if label else QColor(230, 40, 40)
            dot = QGraphicsEllipseItem(-radius, -radius, 2 * radius, 2 * radius)
            dot.setPos(x, y)
            dot.setFlag(QGraphicsEllipseItem.GraphicsItemFlag.ItemIgnoresTransformations)
            dot.setBrush(QBrush(color))
            dot.setPen(QPen(QColor("white"), 1))
            dot.setZValue(Z_PROMPT)
            self.scene().addItem(dot)
            self._markers.append(dot)
        if box is not None:
            rect = QGraphicsRectItem(QRectF(QPointF(box[0], box[1]), QPointF(box[2], box[3])))
            pen = QPen(QColor(255, 200, 0), 0)
            pen.setStyle(Qt.PenStyle.DashLine)
            rect.setPen(pen)
            rect.setZValue(Z_PROMPT)
            self.scene().addItem(rect)
            self._markers.append(rect)

    # -- view

    def fit(self) -> None:
        self._fitted = True
        if self._image_item is not None:
            self.fitInView(self.scene().sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)
            self.zoom_changed.emit(self.zoom)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fitted:
            self.fit()

    @property
    def zoom(self) -> float:
        return self.transform().m11()

    def zoom_by(self, factor: float) -> None:
        factor = max(MIN_ZOOM / self.zoom, min(MAX_ZOOM / self.zoom, factor))
        self._fitted = False
        self.scale(factor, factor)
        self.zoom_changed.emit(self.zoom)

    def image_to_view(self, x: float, y: float):
        """Viewport coordinates (QPoint) of image point (x, y): for tests and tools."""
        return self.mapFromScene(QPointF(x, y))

    def _image_point(self, view_pos) -> QPointF:
        return self.mapToScene(view_pos.toPoint() if hasattr(view_pos, "toPoint") else view_pos)

    def _inside(self, p: QPointF) -> bool:
        if self.image_size is None:
            return False
        h, w = self.image_size
        return 0 <= p.x() < w and 0 <= p.y() < h

    # -- events

    def wheelEvent(self, event) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            # Keep the image pixel under the wheel where it is (the event's position, not
            # the global cursor, which tests and tablets may not move).
            pos = event.position().toPoint()
            pinned = self.mapToScene(pos)
            anchor = self.transformationAnchor()
            self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
            self.zoom_by(ZOOM_STEP ** steps)
            self.setTransformationAnchor(anchor)
            moved = self.mapFromScene(pinned) - pos
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + moved.x())
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() + moved.y())
        event.accept()

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            self.viewport().unsetCursor()
            event.accept()
            return
        super().keyReleaseEvent(event)

    def mousePressEvent(self, event) -> None:
        button = event.button()
        if button == Qt.MouseButton.MiddleButton or (button == Qt.MouseButton.LeftButton
                                                     and self._space):
            self._pan_from = event.position()
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        if self._editor_takes("press", event):
            return
        if button == Qt.MouseButton.LeftButton and self.mode != "prompt":
            p = self._image_point(event.position())
            self._painting = True
            self.paint.emit(p.x(), p.y(), "start")
            event.accept()
            return
        if button in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            self._press = (event.position(), button, event.modifiers())
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:
        if self.mode != "prompt":
            self._show_brush(event.position().toPoint())
        if self._pan_from is not None:
            delta = event.position() - self._pan_from
            self._pan_from = event.position()
            self._fitted = False
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - int(delta.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - int(delta.y()))
            event.accept()
            return
        if self._editor_takes("move", event):
            return
        if self._painting:
            p = self._image_point(event.position())
            self.paint.emit(p.x(), p.y(), "move")
            event.accept()
            return
        if self._press is not None and self._press[1] == Qt.MouseButton.LeftButton \
                and not self._press[2] & Qt.KeyboardModifier.ControlModifier:
            start, pos = self._press[0], event.position()
            if (pos - start).manhattanLength() >= DRAG_PIXELS:
                a, b = self._image_point(start), self._image_point(pos)
                if self._rubber is None:
                    self._rubber = QGraphicsRectItem()
                    self._rubber.setPen(QPen(QColor(255, 200, 0), 0))
                    self._rubber.setZValue(Z_PROMPT)
                    self.scene().addItem(self._rubber)
                self._rubber.setRect(QRectF(a, b).normalized())
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:
        if self._pan_from is not None and event.button() in (Qt.MouseButton.MiddleButton,
                                                             Qt.MouseButton.LeftButton):
            self._pan_from = None
            if self._space:
                self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
            else:
                self.viewport().unsetCursor()
            event.accept()
            return
        if self._editor_takes("release", event):
            return
        if self._painting and event.button() == Qt.MouseButton.LeftButton:
            self._painting = False
            p = self._image_point(event.position())
            self.paint.emit(p.x(), p.y(), "end")
            event.accept()
            return
        if self._press is None or event.button() != self._press[1]:
            super().mouseReleaseEvent(event)
            return
        start, button, mods = self._press
        self._press = None
        if self._rubber is not None:
            self.scene().removeItem(self._rubber)
            self._rubber = None
        event.accept()
        end = event.position()
        a, b = self._image_point(start), self._image_point(end)
        if self.image_size is None:
            return
        if button == Qt.MouseButton.LeftButton and mods & Qt.KeyboardModifier.ControlModifier:
            if self._inside(a):
                self.pick_requested.emit(a.x(), a.y())
            return
        dragged = (end - start).manhattanLength() >= DRAG_PIXELS
        if button == Qt.MouseButton.LeftButton and dragged \
                and not mods & Qt.KeyboardModifier.ShiftModifier:
            h, w = self.image_size
            x0, x1 = sorted((min(max(a.x(), 0.0), w), min(max(b.x(), 0.0), w)))
            y0, y1 = sorted((min(max(a.y(), 0.0), h), min(max(b.y(), 0.0), h)))
            if x1 - x0 >= 1 and y1 - y0 >= 1:
                self.box_drawn.emit(x0, y0, x1, y1)
            return
        if not self._inside(a):
            return
        negative = button == Qt.MouseButton.RightButton or mods & Qt.KeyboardModifier.ShiftModifier
        if not negative and self.click_filter is not None and self.click_filter(a.x(), a.y()):
            return
        self.point_clicked.emit(a.x(), a.y(), 0 if negative else 1)

    def mouseDoubleClickEvent(self, event) -> None:
        if not self._editor_takes("double_click", event):
            super().mouseDoubleClickEvent(event)

    def _editor_takes(self, hook: str, event) -> bool:
        """Polygon vertex editing (prompt mode only) sees the mouse before prompts do."""
        if self.editor is None or self.mode != "prompt" or not getattr(self.editor, hook)(event):
            return False
        event.accept()
        return True

    def contextMenuEvent(self, event) -> None:
        event.accept()   # right click is a background point, not a menu
