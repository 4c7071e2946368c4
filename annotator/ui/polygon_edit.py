"""Polygon view of the selected instance: drag, insert and delete vertices.

The mask stays the truth. The outline shown is `mask_to_polygons(mask, tolerance)`; an
edit rasterises the edited polygons (`polygons_to_mask`) and pushes ONE command (the
target's: `EditMask` for an annotation, `EditCandidate` for a pending candidate; see
targets.py), so undo/redo give back the exact stored masks. The polygons a user edited
are remembered per (target, update time, tolerance), so after an edit (and after its
redo) the vertices stay where they were put instead of being re-traced from the new
raster.

Gestures (prompt mode, one instance or candidate selected): drag a handle to move it; double-click
or Alt+click on the outline to insert a vertex; right-click a handle, or select it with
a click and press Delete, to remove it. Handles keep their size on screen at every zoom.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPathItem

from annotator.core.geometry import Polygon, mask_to_polygons, polygons_to_mask
from annotator.ui.canvas import MIN_ZOOM
from annotator.ui.targets import ANNOTATION, Target, annotation

HANDLE_PX = 4.0         # half side of a handle square, screen pixels
HIT_PX = 7.0            # a press this close to a vertex grabs it (screen pixels)
EDGE_PX = 6.0           # ... this close to an edge is on the outline
DRAG_PX = 2             # moves shorter than this are a click (select), not a drag
SPACING_PX = 2 * HANDLE_PX + 3   # handles closer than this on screen are thinned out
MAX_HANDLES = 2000      # above this, outline only (and a hint to raise the tolerance)
Z_OUTLINE = 25          # above the instances and the preview, below the prompt marks
CACHE_SIZE = 32

Ring = tuple[int, int]  # (polygon index, -1 for the exterior or the hole index)


def spaced(vx: np.ndarray, vy: np.ndarray, starts, min_px: float = SPACING_PX) -> np.ndarray:
    """Which vertices get a handle on screen: along each ring, a vertex closer than
    `min_px` (view pixels) to the last one kept is skipped, so at exact detail or far out
    the handles do not merge into a band; zooming in shows them all. The first vertex of
    each ring always has one. Hidden vertices are not grabbed (they come back on zoom)."""
    keep = np.zeros(len(vx), dtype=bool)
    if len(vx) == 0:
        return keep
    step = np.hypot(np.diff(vx), np.diff(vy))
    if step.size == 0 or step.min() >= min_px:
        keep[:] = True               # nothing crowded: every handle (the common case)
        return keep
    first = {int(i) for i in starts}
    xs, ys = vx.tolist(), vy.tolist()
    lx = ly = 0.0
    limit = min_px * min_px
    for i in range(len(xs)):
        if i in first or (xs[i] - lx) ** 2 + (ys[i] - ly) ** 2 >= limit:
            keep[i] = True
            lx, ly = xs[i], ys[i]
    return keep


def copy_polygons(polygons: list[Polygon]) -> list[Polygon]:
    return [Polygon(p.exterior.copy(), [h.copy() for h in p.holes]) for p in polygons]


class HandleLayer(QGraphicsItem):
    """Every vertex handle in ONE item, painted as squares of a fixed screen size.

    One item instead of one per vertex: a drag repaints once, and few Qt calls are made
    per frame (PySide6 6.12 on Python 3.11 drops a reference to None on every call of a
    method that returns nothing, so thousands of per-handle calls are a hazard)."""

    def __init__(self, editor: "PolygonEditor"):
        super().__init__()
        self.editor = editor
        self.bounds = QRectF()

    def boundingRect(self) -> QRectF:
        return self.bounds

    def paint(self, painter, option, widget=None) -> None:
        rings = self.editor.rings
        if not rings:
            return
        points = np.concatenate(rings)
        t = painter.worldTransform()
        x, y = points[:, 0], points[:, 1]
        ax, ay = t.m11() * x + t.m21() * y + t.dx(), t.m12() * x + t.m22() * y + t.dy()
        keep = spaced(ax, ay, np.cumsum([0] + [len(r) for r in rings[:-1]]))
        self.editor.drawn_handles = int(keep.sum())
        vx, vy = ax.tolist(), ay.tolist()
        r, side = HANDLE_PX, 2 * HANDLE_PX
        painter.save()
        painter.resetTransform()           # draw in device pixels: same size at any zoom
        painter.setPen(QPen(QColor(20, 20, 20), 1))
        painter.setBrush(QBrush(QColor(255, 255, 255)))
        painter.drawRects([QRectF(vx[i] - r, vy[i] - r, side, side)
                           for i in np.flatnonzero(keep).tolist()])
        sel = self.editor.selected
        if sel is not None and sel[0] < len(rings) and sel[1] < len(rings[sel[0]]):
            i = sum(len(ring) for ring in rings[:sel[0]]) + sel[1]
            painter.setBrush(QBrush(QColor(255, 60, 60)))
            painter.drawRect(QRectF(vx[i] - r, vy[i] - r, side, side))
        painter.restore()


class PolygonEditor(QObject):
    status = Signal(str)

    def __init__(self, canvas, push: Callable[[Any], Any], parent=None):
        super().__init__(parent)
        self.canvas, self._push = canvas, push
        self.tolerance = 1.0
        self.target: Target | None = None
        self.polygons: list[Polygon] = []
        self.selected: tuple[int, int] | None = None     # (ring index, vertex index)
        self.handles_shown = False
        self.drawn_handles = 0             # handles on screen at the last paint (thinned)
        self._mask: np.ndarray | None = None
        self._updated: float = 0.0
        self._key: tuple | None = None
        self._outline: QGraphicsPathItem | None = None
        self._handles: HandleLayer | None = None
        self._drag: list | None = None     # [ring, vertex, press position, moved]
        self._still = QPainterPath()       # outline of the rings a drag does not move
        self._cache: OrderedDict[tuple, list[Polygon]] = OrderedDict()
        self._pending: tuple[int, list[Polygon]] | None = None

    # -- what is shown

    @property
    def ann_id(self) -> int | None:
        """The annotation being edited (None when none, or when it is a candidate)."""
        t = self.target
        return t.id if t is not None and t.kind == ANNOTATION else None

    def show(self, target: Target | int | None, mask: np.ndarray | None,
             updated: float = 0.0) -> None:
        """Edit `target` (an annotation id or a Target; its current mask and update
        time), or nothing when None."""
        if isinstance(target, (int, np.integer)):
            target = annotation(int(target))
        if target is None or mask is None:
            self._clear_items()
            self.target, self._mask, self._key, self.polygons = None, None, None, []
            self.selected = self._drag = None
            return
        key = (target, updated, self.tolerance)
        if key == self._key and self._alive():
            return
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == target and key not in self._cache:
            self._remember(key, pending[1])        # the polygons this edit was made of
        if key in self._cache:
            polygons = copy_polygons(self._cache[key])
        else:       # simplifying a big outline takes a while: once per mask and tolerance
            polygons = mask_to_polygons(mask, self.tolerance)
            self._remember(key, polygons)
        if target != self.target:
            self.selected = None
        self.target, self._mask, self._updated, self._key = target, mask, updated, key
        self.polygons = polygons
        self._drag = None
        if self.selected is not None and not self._valid(self.selected):
            self.selected = None
        self._draw()

    def set_tolerance(self, tolerance: float) -> None:
        """Display/edit density only: the stored mask is not touched."""
        self.tolerance = float(tolerance)
        if self.target is not None:
            self.selected = None
            self._reshow()

    @property
    def rings(self) -> list[np.ndarray]:
        return [self._ring(r) for r in self._ring_refs()]

    @property
    def vertex_count(self) -> int:
        return sum(len(r) for r in self.rings)

    def vertex(self, ring: int, index: int) -> tuple[float, float]:
        x, y = self.rings[ring][index]
        return float(x), float(y)

    # -- edits (each one command of the target's)

    def move_vertex(self, ring: int, index: int, x: float, y: float) -> bool:
        self._set_point(ring, index, x, y)
        return self._commit("Move polygon vertex")

    def insert_vertex(self, ring: int, after: int, x: float, y: float) -> bool:
        """A new vertex between `after` and the next one."""
        points = np.insert(self.rings[ring], after + 1, [x, y], axis=0)
        self._set_ring(ring, points)
        self.selected = (ring, after + 1)
        return self._commit("Insert polygon vertex")

    def delete_vertex(self, ring: int, index: int) -> bool:
        """Remove a vertex; a ring left with fewer than 3 goes (a hole, or one part of
        several); the last part of an instance is kept (delete the instance instead)."""
        points = self.rings[ring]
        refs = self._ring_refs()
        if len(points) > 3:
            self._set_ring(ring, np.delete(points, index, axis=0))
        elif refs[ring][1] >= 0:
            pi, hi = refs[ring]
            del self.polygons[pi].holes[hi]
        elif len(self.polygons) > 1:
            del self.polygons[refs[ring][0]]
        else:
            self.selected = None
            self._restyle()
            self.status.emit("a polygon needs 3 vertices; to remove the instance, select it "
                             "and press Delete")
            return False
        self.selected = None
        return self._commit("Delete polygon vertex")

    def delete_selected(self) -> bool:
        """Delete key: remove the selected vertex; False when none is selected."""
        if self.target is None or self.selected is None or not self.handles_shown:
            return False
        self.delete_vertex(*self.selected)
        return True

    def _commit(self, description: str) -> bool:
        h, w = self._mask.shape
        try:
            mask = polygons_to_mask(self.polygons, (h, w))
        except ValueError as exc:
            self.status.emit(f"polygon edit refused: {exc}")
            self._reshow()
            return False
        if not mask.any():
            self.status.emit("that edit would leave the instance empty; delete the instance "
                             "instead")
            self._reshow()
            return False
        command = self.target.edit(mask, description)
        self._pending = (self.target, copy_polygons(self.polygons))
        if self._push(command) is None:       # refused: the window already said why
            self._pending = None
            self._reshow()
            return False
        return True

    # -- mouse, from the canvas (True = consumed)

    def press(self, event) -> bool:
        if not self._editable() or event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            return False
        pos, button = event.position(), event.button()
        alt = bool(event.modifiers() & Qt.KeyboardModifier.AltModifier)
        hit = self._hit_vertex(pos)
        if button == Qt.MouseButton.RightButton:
            if hit is None:
                return False
            self.delete_vertex(*hit)
            return True
        if button != Qt.MouseButton.LeftButton:
            return False
        if hit is not None and not alt:
            self.selected = hit
            self._drag = [hit[0], hit[1], QPointF(pos), False]
            self._restyle()
            return True
        edge = self._hit_edge(pos)
        if edge is None:
            return False
        if alt:
            self.insert_vertex(*edge)
        else:
            self.status.emit("double-click (or Alt+click) the outline to add a vertex")
        return True          # a press on the outline is the editor's, not a prompt point

    def move(self, event) -> bool:
        if self._drag is None:
            return False
        ring, index, start, moved = self._drag
        pos = event.position()
        if not moved and (pos - start).manhattanLength() < DRAG_PX:
            return True
        if not moved:     # the other rings do not move: trace them once per drag
            self._drag[3] = True
            self._still = self._path(skip=ring)
        x, y = self._clamped(self.canvas.mapToScene(pos.toPoint()))
        self._set_point(ring, index, x, y)
        points = self.rings[ring].tolist()
        path = QPainterPath(self._still)
        path.addPolygon(QPolygonF([QPointF(px, py) for px, py in points]))
        path.closeSubpath()
        self._outline.setPath(path)
        self._handles.update()
        return True

    def release(self, event) -> bool:
        if self._drag is None or event.button() != Qt.MouseButton.LeftButton:
            return False
        ring, index, _start, moved = self._drag
        self._drag = None
        if moved:
            x, y = self.vertex(ring, index)
            self.move_vertex(ring, index, x, y)
        return True

    def double_click(self, event) -> bool:
        if not self._editable() or event.button() != Qt.MouseButton.LeftButton \
                or event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            return False
        pos = event.position()
        if self._hit_vertex(pos) is not None:
            return True
        edge = self._hit_edge(pos)
        if edge is None:
            return False
        self.insert_vertex(*edge)
        return True

    # -- internals

    def _editable(self) -> bool:
        return self.target is not None and self.handles_shown and self.canvas.mode == "prompt" \
            and self._alive()

    def _ring_refs(self) -> list[Ring]:
        return [(i, j) for i, p in enumerate(self.polygons) for j in range(-1, len(p.holes))]

    def _ring(self, ref: Ring) -> np.ndarray:
        p = self.polygons[ref[0]]
        return p.exterior if ref[1] < 0 else p.holes[ref[1]]

    def _set_ring(self, ring: int, points: np.ndarray) -> None:
        pi, hi = self._ring_refs()[ring]
        if hi < 0:
            self.polygons[pi].exterior = points
        else:
            self.polygons[pi].holes[hi] = points

    def _set_point(self, ring: int, index: int, x: float, y: float) -> None:
        points = self.rings[ring].copy()
        points[index] = (x, y)
        self._set_ring(ring, points)

    def _valid(self, sel: tuple[int, int]) -> bool:
        rings = self.rings
        return sel[0] < len(rings) and sel[1] < len(rings[sel[0]])

    def _clamped(self, p: QPointF) -> tuple[float, float]:
        h, w = self._mask.shape
        return min(max(p.x(), 0.0), float(w)), min(max(p.y(), 0.0), float(h))

    def _remember(self, key: tuple, polygons: list[Polygon]) -> None:
        self._cache[key] = copy_polygons(polygons)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)

    def _reshow(self) -> None:
        self._key = None
        self.show(self.target, self._mask, self._updated)

    def _view_xy(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = self.canvas.viewportTransform()
        x, y = points[:, 0], points[:, 1]
        return t.m11() * x + t.m21() * y + t.dx(), t.m12() * x + t.m22() * y + t.dy()

    def _flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All vertices, each one's successor on its ring, and ring starts (one array
        pass instead of a Python loop over rings: outlines may have hundreds)."""
        rings = self.rings
        points = np.concatenate(rings)
        starts = np.cumsum([0] + [len(r) for r in rings[:-1]])
        nxt = np.arange(len(points)) + 1
        ends = starts + np.array([len(r) for r in rings]) - 1
        nxt[ends] = starts
        return points, points[nxt], starts

    def _locate(self, flat_index: int, starts: np.ndarray) -> tuple[int, int]:
        ring = int(np.searchsorted(starts, flat_index, side="right")) - 1
        return ring, flat_index - int(starts[ring])

    def _hit_vertex(self, pos: QPointF) -> tuple[int, int] | None:
        if not self.polygons:
            return None
        points, _nxt, starts = self._flat()
        vx, vy = self._view_xy(points)
        d = np.hypot(vx - pos.x(), vy - pos.y())
        keep = spaced(vx, vy, starts)
        if self.selected is not None and self._valid(self.selected):
            keep[int(starts[self.selected[0]]) + self.selected[1]] = True
        d[~keep] = np.inf                  # only the handles drawn can be grabbed
        i = int(np.argmin(d))
        return self._locate(i, starts) if d[i] <= HIT_PX else None

    def _hit_edge(self, pos: QPointF) -> tuple[int, int, float, float] | None:
        """(ring, index of the edge's first vertex, image x, y of the nearest edge point)."""
        if not self.polygons:
            return None
        points, nxt, starts = self._flat()
        ax, ay = self._view_xy(points)
        bx, by = self._view_xy(nxt)
        dx, dy = bx - ax, by - ay
        length2 = np.maximum(dx * dx + dy * dy, 1e-12)
        t = np.clip(((pos.x() - ax) * dx + (pos.y() - ay) * dy) / length2, 0.0, 1.0)
        d = np.hypot(ax + t * dx - pos.x(), ay + t * dy - pos.y())
        i = int(np.argmin(d))
        if d[i] > EDGE_PX:
            return None
        x, y = points[i] + t[i] * (nxt[i] - points[i])
        return (*self._locate(i, starts), float(x), float(y))

    def _path(self, skip: int | None = None, base: QPainterPath | None = None) -> QPainterPath:
        """The outline of every ring but `skip`, added to a copy of `base`."""
        path = QPainterPath() if base is None else QPainterPath(base)
        for r, points in enumerate(self.rings):
            if r != skip:
                path.addPolygon(QPolygonF([QPointF(x, y) for x, y in points.tolist()]))
                path.closeSubpath()
        return path

    def _draw(self) -> None:
        self._clear_items()
        scene = self.canvas.scene()
        pen = QPen(QColor(255, 255, 255), 1.5)
        pen.setCosmetic(True)          # one screen width at every zoom
        self._outline = QGraphicsPathItem(self._path())
        self._outline.setPen(pen)
        self._outline.setZValue(Z_OUTLINE)
        scene.addItem(self._outline)
        count = self.vertex_count
        self.handles_shown = count <= MAX_HANDLES
        if not self.handles_shown:
            self.status.emit(f"the outline has {count} vertices, too many to edit; raise the "
                             f"polygon tolerance (the , key)")
            return
        self._handles = HandleLayer(self)
        h, w = self._mask.shape
        # margin: a handle's half size at the smallest zoom, in image pixels
        margin = (HANDLE_PX + 2) / MIN_ZOOM
        self._handles.bounds = QRectF(-margin, -margin, w + 2 * margin, h + 2 * margin)
        self._handles.setZValue(Z_OUTLINE + 1)
        scene.addItem(self._handles)

    def _restyle(self) -> None:
        if self._handles is not None:
            self._handles.update()

    def _alive(self) -> bool:
        """False once the canvas cleared its scene (another image) under our items."""
        try:
            return self._outline is not None and self._outline.scene() is not None
        except RuntimeError:
            return False

    def _clear_items(self) -> None:
        items = [self._outline, self._handles]
        scene = self.canvas.scene()
        for item in items:
            if item is None:
                continue
            try:
                if item.scene() is scene:
                    scene.removeItem(item)
            except RuntimeError:      # already deleted by scene.clear()
                pass
        self._outline = self._handles = None
        self.handles_shown = False
