"""The hint strip in the toolbar: what the keys and the mouse do now, for the tool in
use: idle, prompting, a selected instance, brush or eraser, reviewing candidates."""
from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QSizePolicy

HINTS = {
    "idle": "Click: object · Right click: background · Drag: box · Click an instance: "
            "select · Enter: accept · Esc: clear · F1: keys",
    "prompting": "Click: more object · Right click: background · Tab: next mask · "
                 "Enter: accept · Ctrl+Z: drop last point · Esc: clear",
    "instance": "Drag a vertex: move · Alt+click an edge: add vertex · Del: delete · "
                "B / E: brush / eraser · M: merge · K: split · C: to current class · Esc",
    "brush": "Drag: paint onto the selected mask · [ and ]: brush size · E: eraser · "
             "Esc or B: stop",
    "eraser": "Drag: erase from the selected mask · [ and ]: brush size · B: brush · "
              "Esc or E: stop",
    "review": "Enter: accept candidate · Del: reject · Tab / Shift+Tab: next / previous · "
              "Shift+Enter: accept all shown · slider: score threshold",
}


def state(w) -> str:
    if w.canvas.mode in ("brush", "eraser"):
        return w.canvas.mode
    if not w.labeler.prompt.is_empty:
        return "prompting"
    if w.review.selected is not None:
        return "review"
    if w.instances.selected_ids:
        return "instance"
    if w.canvas.candidates is not None and w.review.shown_ids():
        return "review"
    return "idle"


def update(w) -> None:
    w.hint_pending = False
    if getattr(w, "_closed", False):
        return
    now = state(w)
    if getattr(w, "hint_state", None) != now:
        w.hint_state = now
        w.hint.setText(f"  {HINTS[now]}  ")
        w.hint.setMinimumWidth(min(w.hint.sizeHint().width(), 420))


def install(w) -> None:
    # the strip may be cut short on a narrow window; it never widens the window
    w.hint.setMinimumWidth(1)
    w.hint.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    w.hint_pending = False

    def later(*_args):              # once per burst of signals
        if not w.hint_pending:
            w.hint_pending = True
            QTimer.singleShot(0, lambda: update(w))
    for signal in (w.labeler.prompt_changed, w.instances.selection_changed,
                   w.canvas.mode_changed, w.review.selected_changed, w.review.status):
        signal.connect(later)
    update(w)
