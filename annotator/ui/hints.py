"""The hint strip in the toolbar: what the keys and the mouse do now, for the tool in
use: idle, prompting, a selected instance, brush or eraser, reviewing candidates."""
from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import QLabel

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
        w.hint.setToolTip(HINTS[now])


class HintLabel(QLabel):
    """A one-line label that asks for at most MAX_PX and shows what does not fit elided
    (the whole text in its tooltip): the strip never widens the window."""
    MAX_PX = 470

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        return QSize(min(hint.width(), self.MAX_PX), hint.height())

    def minimumSizeHint(self) -> QSize:
        return QSize(min(120, super().minimumSizeHint().width()), super().minimumSizeHint().height())

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
        text = self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight,
                                             self.width())
        painter.drawText(self.rect(), int(Qt.AlignmentFlag.AlignVCenter), text)


def install(w) -> None:
    w.hint_pending = False

    def later(*_args):              # once per burst of signals
        if not w.hint_pending:
            w.hint_pending = True
            QTimer.singleShot(0, lambda: update(w))
    for signal in (w.labeler.prompt_changed, w.instances.selection_changed,
                   w.canvas.mode_changed, w.review.selected_changed, w.review.status):
        signal.connect(later)
    update(w)
