"""Overlay items of the canvas that are not masks: the preview's marching ants and the
brush circle (both drawn with cosmetic pens: the same on screen at every zoom)."""
from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsItem

ANTS_MS = 120              # the preview outline moves one step this often
ANTS_DASH = 4              # dash and gap length, screen pixels


class AntsItem(QGraphicsItem):
    """The preview's outline: white dashes over a black line, moving one step at each
    `march` (cosmetic pens: the same on screen at every zoom)."""

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.offset = 0.0
        self._bounds = path.boundingRect().adjusted(-2, -2, 2, 2)

    def boundingRect(self) -> QRectF:
        return self._bounds

    def march(self) -> None:
        self.offset = (self.offset + 1) % (2 * ANTS_DASH)
        self.update()

    def paint(self, painter, option, widget=None) -> None:
        under = QPen(QColor(0, 0, 0), 2.0)
        under.setCosmetic(True)
        painter.setPen(under)
        painter.drawPath(self.path)
        dashes = QPen(QColor(255, 255, 255), 2.0)
        dashes.setCosmetic(True)
        dashes.setDashPattern([ANTS_DASH / 2, ANTS_DASH / 2])   # in pen widths
        dashes.setDashOffset(self.offset / 2)
        painter.setPen(dashes)
        painter.drawPath(self.path)


def brush_circle_item(radius: int, z: float) -> QGraphicsEllipseItem:
    """A circle of `radius` image pixels around its position (setPos: the cursor)."""
    item = QGraphicsEllipseItem(QRectF(-radius, -radius, 2 * radius, 2 * radius))
    pen = QPen(QColor(255, 255, 255), 1.5)
    pen.setCosmetic(True)
    item.setPen(pen)
    item.setZValue(z)
    return item


def style_brush_circle(item: QGraphicsEllipseItem, erasing: bool) -> None:
    """White and solid for the brush, red and dashed for the eraser."""
    pen = item.pen()
    pen.setColor(QColor(255, 90, 90) if erasing else QColor(255, 255, 255))
    pen.setStyle(Qt.PenStyle.DashLine if erasing else Qt.PenStyle.SolidLine)
    item.setPen(pen)
