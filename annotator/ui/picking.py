"""What a click on the canvas selects, one rule for candidates and instances.

With no prompt live, a plain left click on a shown candidate or a visible accepted
instance selects it instead of starting a prompt: the candidate first (pending review
comes before finished work), else the smallest instance under the cursor (a small object
drawn on a big one stays reachable). A plain click on what is already selected is a
prompt point after all, so one can still prompt on top of an instance: click it twice.
Ctrl+click selects with the same rule (hidden instances too, a click on nothing clears
the selection) and never starts a prompt.
"""
from __future__ import annotations

from typing import Any


def instance_at(w: Any, x: float, y: float, visible_only: bool) -> int | None:
    """The smallest accepted instance of the current image under image point (x, y)."""
    if w.image_id is None:
        return None
    best: tuple[int, int] | None = None
    for ann in w.project.annotations(w.image_id):
        if visible_only and not w.instances.is_visible(ann.id):
            continue
        crop = w.crops.get(ann.rle)
        if crop is not None and crop.contains(x, y):
            area = int(crop.mask.sum())
            if best is None or area < best[0]:
                best = (area, ann.id)
    return None if best is None else best[1]


def candidate_at(w: Any, x: float, y: float) -> int | None:
    layer = w.canvas.candidates
    return layer.hit(x, y) if layer is not None else None


def plain_click(w: Any, x: float, y: float) -> bool:
    """The canvas's click filter: True when the click selected something (no point)."""
    if not w.labeler.prompt.is_empty or w.image_id is None:
        return False
    cand = candidate_at(w, x, y)
    if cand is not None:
        if cand == w.review.selected:
            return False
        w.review.select(cand)
        return True
    ann = instance_at(w, x, y, visible_only=True)
    if ann is None or w.instances.selected_ids == [ann]:
        return False
    select_instance(w, ann)
    return True


def ctrl_click(w: Any, x: float, y: float) -> None:
    if w.image_id is None:
        return
    cand = candidate_at(w, x, y)
    if cand is not None:
        w.review.select(cand)
        return
    ann = instance_at(w, x, y, visible_only=False)
    if ann is None:
        w.instances.select([])
    else:
        select_instance(w, ann)


def select_instance(w: Any, ann_id: int) -> None:
    w.instances.select([ann_id])
    try:
        rec = w.project.annotation(ann_id)
        name = w.project.category(rec.category_id).name
    except Exception:      # noqa: BLE001 - only the message depends on it
        name = "instance"
    w.statusBar().showMessage(
        f"selected {name} {ann_id}: drag its vertices, B / E brush, C to the current "
        "class, Delete; click it again to put a prompt point there")
