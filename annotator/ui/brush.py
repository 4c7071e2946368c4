"""Brush and eraser on one selected instance or candidate (a `targets.Target`): strokes
paint into a working copy of its mask, drawn live; releasing the mouse commits the new
mask as one undoable command (EditMask, or EditCandidate for a candidate)."""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np
from PySide6.QtCore import QObject, Signal

from annotator.core.geometry import rle_to_mask
from annotator.core.store import Project
from annotator.ui.canvas import Canvas
from annotator.ui.targets import Target

MIN_RADIUS, MAX_RADIUS = 1, 200


class BrushTool(QObject):
    status = Signal(str)
    radius_changed = Signal(int)

    def __init__(self, project: Project, canvas: Canvas, selected: Callable[[], list[Target]],
                 color_of: Callable[[Target], object], push: Callable,
                 redraw: Callable[[], None], parent=None):
        super().__init__(parent)
        self.project, self.canvas = project, canvas
        self._selected, self._color_of, self._push = selected, color_of, push
        self._redraw = redraw      # shows the stored masks again when a stroke is refused
        self.radius = 6                       # image pixels
        self._target: Target | None = None
        self._mask: np.ndarray | None = None
        self._before: np.ndarray | None = None
        self._last: tuple[int, int] | None = None
        canvas.paint.connect(self.on_paint)

    def resize(self, factor: float) -> None:
        """[ and ]: scale the radius, by at least one pixel."""
        scaled = round(self.radius * factor)
        if scaled == self.radius:
            scaled += 1 if factor > 1 else -1
        self.radius = max(MIN_RADIUS, min(MAX_RADIUS, scaled))
        self.radius_changed.emit(self.radius)
        self.status.emit(f"brush radius {self.radius} px")

    def on_paint(self, x: float, y: float, phase: str) -> None:
        if phase == "start":
            ids = self._selected()
            if len(ids) != 1:
                self._target = None
                self.status.emit("select exactly one instance or candidate to paint on "
                                 "(Ctrl+click it)")
                return
            self._target = ids[0]
            self._mask = rle_to_mask(self._target.record(self.project).rle).copy()
            self._before = self._mask.copy()
            self._last = None
        if self._target is None or self._mask is None:
            return
        self._stroke(x, y)
        if phase == "end":
            target, mask, before = self._target, self._mask, self._before
            self._target = self._mask = self._before = None
            if not np.array_equal(mask, before) and self._push(target.edit(mask)) is None:
                self._redraw()

    def _stroke(self, x: float, y: float) -> None:
        h, w = self._mask.shape
        p = (int(round(min(max(x, 0), w - 1))), int(round(min(max(y, 0), h - 1))))
        value = 1 if self.canvas.mode == "brush" else 0
        canvas = self._mask.astype(np.uint8)
        if self._last is None:
            cv2.circle(canvas, p, self.radius, value, thickness=-1)
        else:
            cv2.line(canvas, self._last, p, value, thickness=2 * self.radius)
            cv2.circle(canvas, p, self.radius, value, thickness=-1)
        self._mask = canvas.astype(bool)
        self._last = p
        self.canvas.update_target(self._target, self._mask, self._color_of(self._target))
