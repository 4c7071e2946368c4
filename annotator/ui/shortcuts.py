"""Help ▸ Keyboard shortcuts (F1, ?): one searchable sheet of every key the window binds
and the canvas's mouse gestures. The rows are read from the window's bound actions
(actions.ACTIONS, as bound), so the sheet lists exactly what the keys do."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QDialog, QHeaderView, QLabel, QLineEdit, QTableWidget,
                               QTableWidgetItem, QVBoxLayout)

from annotator.ui.actions import GESTURES, key_name


def sheet_rows(window) -> list[tuple[str, str, str]]:
    """(keys, what it does, where) for every bound action with a key, then gestures."""
    rows = []
    for act, action in getattr(window, "bound_actions", []):
        keys = list(dict.fromkeys(key_name(k) for k in action.shortcuts()))
        if keys:
            rows.append((" / ".join(keys), act.text, act.menu or "keys"))
    rows += [(gesture, does, "mouse") for gesture, does in GESTURES]
    return rows


class ShortcutSheet(QDialog):
    def __init__(self, window):
        super().__init__(window)
        self.setWindowTitle("Keyboard shortcuts")
        self.resize(720, 640)
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("search: a key (Ctrl+Z) or a word (undo, class, brush)")
        self.search.setClearButtonEnabled(True)
        self.rows = sheet_rows(window)
        self.table = QTableWidget(len(self.rows), 3, self)
        self.table.setHorizontalHeaderLabels(["Keys", "Does", "Menu"])
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        for r, row in enumerate(self.rows):
            for c, text in enumerate(row):
                self.table.setItem(r, c, QTableWidgetItem(text))
        note = QLabel("Text fields keep their own letters; Ctrl+Z while prompting takes back "
                      "the last point, otherwise it undoes on the image shown.", self)
        note.setWordWrap(True)
        note.setStyleSheet("color: gray")
        layout = QVBoxLayout(self)
        layout.addWidget(self.search)
        layout.addWidget(self.table, 1)
        layout.addWidget(note)
        self.search.textChanged.connect(self.filter)
        self.search.setFocus()

    def filter(self, text: str) -> None:
        """Show the rows whose keys, text or menu hold every word typed."""
        words = text.lower().split()
        for r, row in enumerate(self.rows):
            blob = " ".join(row).lower()
            self.table.setRowHidden(r, not all(word in blob for word in words))

    def visible_rows(self) -> list[tuple[str, str, str]]:
        return [row for r, row in enumerate(self.rows) if not self.table.isRowHidden(r)]

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Escape and self.search.text():
            self.search.clear()           # Esc clears the search first, then closes
            return
        super().keyPressEvent(event)


def show_shortcuts(window) -> ShortcutSheet:
    sheet = getattr(window, "shortcut_sheet", None)
    if sheet is None:
        sheet = window.shortcut_sheet = ShortcutSheet(window)
    sheet.search.clear()
    sheet.show()
    sheet.raise_()
    sheet.activateWindow()
    return sheet
