"""Small widgets shared by the window."""
from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QHBoxLayout, QLineEdit, QPushButton, QVBoxLayout, QWidget

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


def list_with_buttons(panel: QWidget, list_widget: QWidget, buttons) -> None:
    """Lay out a side panel: the list, then a row of buttons that never take keyboard
    focus (the window's single-key shortcuts must keep working). `buttons` holds
    (text, tooltip or "", slot) triples."""
    row = QHBoxLayout()
    for text, tip, slot in buttons:
        button = QPushButton(text, panel)
        if tip:
            button.setToolTip(tip)
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        button.clicked.connect(slot)
        row.addWidget(button)
    layout = QVBoxLayout(panel)
    layout.setContentsMargins(2, 2, 2, 2)
    layout.addWidget(list_widget)
    layout.addLayout(row)
