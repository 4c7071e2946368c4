"""Small widgets shared by the window."""
from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QLineEdit

_OWN_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape)


class PromptField(QLineEdit):
    """A line edit whose Enter and Esc are its own while it has focus: the window's
    single-key shortcuts (Enter accepts a mask, Esc clears the prompt) must not steal
    them. Esc empties the field and gives the focus back (to the canvas)."""

    def __init__(self, parent=None, focus_back=None):
        super().__init__(parent)
        self._focus_back = focus_back

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and event.key() in _OWN_KEYS:
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.clear()
            if self._focus_back is not None:
                self._focus_back.setFocus()
            event.accept()
            return
        super().keyPressEvent(event)
