"""Pending candidates on the canvas: dashed outlines in one candidate colour, each with
its score, in ONE graphics item (like the polygon handles), so a threshold change is a
single repaint of cached paths, not hundreds of item updates.

`Shape` is what a candidate costs once per (id, update time): its mask cropped to its
box (mask_cache.Crop, for clicks) and its outline as a QPainterPath. `ShapeCache`
keeps them across redraws; the crops come from the window's CropCache.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsItem

from annotator.ui.mask_cache import Crop, CropCache, crop_of

CANDIDATE_COLOR = QColor(0, 230, 255)       # cyan: no category colour is this saturated
SELECTED_COLOR = QColor(255, 170, 0)
Z_CANDIDATES = 15                           # above the instances, below the preview
LABEL_MARGIN = 1000                         # image pixels: a label's height at the least zoom


@dataclass
class Shape:
    crop: Crop
    path: QPainterPath      # outline, image coordinates
    area: int = 0

    def __post_init__(self):
        self.area = self.crop.area
        self.x0, self.y0 = self.crop.x0, self.crop.y0

    def contains(self, x: float, y: float) -> bool:
        return self.crop.contains(x, y)


def shape_from_crop(crop: Crop | None) -> Shape | None:
    if crop is None:
        return None
    return Shape(crop, outline_path(crop.mask, crop.x0, crop.y0))


def shape_of(mask: np.ndarray) -> Shape | None:
    """The shape of a full-size mask (None when empty)."""
    return shape_from_crop(crop_of(mask))


def outline_path(crop: np.ndarray, x0: int, y0: int) -> QPainterPath:
    """Outer and hole contours of a cropped mask, slightly simplified, through the
    pixel corners' centres (offset by half a pixel so it sits on the pixels)."""
    contours, _ = cv2.findContours(crop.astype(np.uint8), cv2.RETR_CCOMP,
                                   cv2.CHAIN_APPROX_SIMPLE)
    path = QPainterPath()
    for c in contours:
        c = cv2.approxPolyDP(c, 0.7, True).reshape(-1, 2)
        if len(c) < 2:
            continue
        pts = (c + (x0 + 0.5, y0 + 0.5)).tolist()
        path.addPolygon(QPolygonF([QPointF(x, y) for x, y in pts]))
        path.closeSubpath()
    return path


class ShapeCache:
    """(candidate id, updated) -> Shape; entries of candidates no longer listed go."""

    def __init__(self, crops: CropCache):
        self._crops = crops
        self._shapes: dict[tuple[int, float], Shape | None] = {}

    def shapes(self, candidates) -> dict[int, Shape]:
        live = {(c.id, c.updated) for c in candidates}
        self._shapes = {k: v for k, v in self._shapes.items() if k in live}
        out = {}
        for c in candidates:
            key = (c.id, c.updated)
            if key not in self._shapes:
                self._shapes[key] = shape_from_crop(self._crops.get(c.rle))
            if self._shapes[key] is not None:
                out[c.id] = self._shapes[key]
        return out


@dataclass
class Entry:
    id: int
    score: float
    shape: Shape
    text: str               # the label drawn at the top left: score (and class)


class CandidateLayer(QGraphicsItem):
    """Every pending candidate of the image; those scoring below `threshold` are not
    drawn (nor clickable: see `hit`)."""

    def __init__(self, width: int, height: int):
        super().__init__()
        self.entries: list[Entry] = []
        self.threshold = 0.0
        self.selected: int | None = None
        m = LABEL_MARGIN
        self._bounds = QRectF(-m, -m, width + 2 * m, height + 2 * m)   # room for the labels
        self._font = QFont()
        self._font.setPixelSize(11)
        self._metrics = QFontMetricsF(self._font)
        self.setZValue(Z_CANDIDATES)

    def boundingRect(self) -> QRectF:
        return self._bounds

    def set_entries(self, entries: list[Entry], selected: int | None) -> None:
        self.entries, self.selected = entries, selected
        self.update()

    def set_threshold(self, threshold: float) -> None:
        self.threshold = float(threshold)
        self.update()

    def replace_shape(self, cand_id: int, shape: Shape | None) -> None:
        """A live edit (brush stroke) of one candidate."""
        for e in self.entries:
            if e.id == cand_id and shape is not None:
                e.shape = shape
        self.update()

    def shown(self) -> list[Entry]:
        return [e for e in self.entries if e.score >= self.threshold]

    def hit(self, x: float, y: float) -> int | None:
        """The smallest shown candidate under image point (x, y)."""
        hits = [e for e in self.shown() if e.shape.contains(x, y)]
        return min(hits, key=lambda e: e.shape.area).id if hits else None

    def paint(self, painter, option, widget=None) -> None:
        shown = self.shown()
        if not shown:
            return
        exposed = option.exposedRect
        shown = [e for e in shown if e.shape.path.controlPointRect().intersects(exposed)]
        under = QPen(QColor(0, 0, 0, 160), 1.0)
        under.setCosmetic(True)
        dashed = QPen(CANDIDATE_COLOR, 1.0, Qt.PenStyle.DashLine)
        dashed.setCosmetic(True)
        painter.setBrush(Qt.BrushStyle.NoBrush)      # outlines only: the photo stays visible
        selected = None
        for e in shown:
            if e.id == self.selected:
                selected = e
                continue
            painter.setPen(under)
            painter.drawPath(e.shape.path)
            painter.setPen(dashed)
            painter.drawPath(e.shape.path)
        if selected is not None:
            pen = QPen(SELECTED_COLOR, 2.0, Qt.PenStyle.DashLine)
            pen.setCosmetic(True)
            painter.setPen(pen)
            painter.setBrush(QBrush(QColor(255, 170, 0, 70)))
            painter.drawPath(selected.shape.path)
        self._labels(painter, shown)

    def _labels(self, painter, shown: list[Entry]) -> None:
        """Scores in screen pixels at each box's top left (same size at any zoom)."""
        t = painter.worldTransform()
        painter.save()
        painter.resetTransform()
        painter.setFont(self._font)
        ascent = self._metrics.ascent()
        for e in shown:
            p = t.map(QPointF(e.shape.x0, e.shape.y0))
            w = self._metrics.horizontalAdvance(e.text) + 4
            box = QRectF(p.x(), p.y() - ascent - 3, w, ascent + 3)
            sel = e.id == self.selected
            painter.fillRect(box, QColor(255, 170, 0, 220) if sel else QColor(0, 0, 0, 170))
            painter.setPen(QColor(0, 0, 0) if sel else CANDIDATE_COLOR)
            painter.drawText(QPointF(p.x() + 2, p.y() - 2), e.text)
        painter.restore()
