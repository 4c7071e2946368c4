"""The class panel: the project's categories with their colours and digit keys. Adding,
renaming and recolouring go through undoable commands (the window passes them on)."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QColorDialog, QInputDialog, QListWidget,
                               QListWidgetItem, QWidget)

from annotator.core.dataset import CategoryRecord
from annotator.ui.widgets import list_with_buttons

# Colours for categories stored without one (distinct on dark and light images).
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
           "#bfef45", "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000",
           "#aaffc3", "#808000", "#ffd8b1", "#000075")


def category_color(cat: CategoryRecord | None) -> QColor:
    if cat is None:
        return QColor(255, 255, 0)
    if cat.color:
        return QColor(cat.color)
    return QColor(PALETTE[(cat.id - 1) % len(PALETTE)])


def swatch(color: QColor, size: int = 14) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(color)
    return QIcon(pixmap)


class CategoryPanel(QWidget):
    current_changed = Signal(int)                 # category id
    add_requested = Signal(str)                   # name
    rename_requested = Signal(int, str)           # id, new name
    recolor_requested = Signal(int, str)          # id, "#rrggbb"

    def __init__(self, parent=None):
        super().__init__(parent)
        self.list = QListWidget(self)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.list.currentItemChanged.connect(self._current_item_changed)
        self.list.itemDoubleClicked.connect(lambda _item: self.ask_rename())
        list_with_buttons(self, self.list, (("Add…", "", self.ask_add),
                                            ("Rename…", "", self.ask_rename),
                                            ("Colour…", "", self.ask_color)))
        self._categories: list[CategoryRecord] = []

    def set_categories(self, categories: list[CategoryRecord]) -> None:
        keep = self.current_id
        self._categories = list(categories)
        self.list.blockSignals(True)
        self.list.clear()
        for i, cat in enumerate(categories):
            key = f"{i + 1}  " if i < 9 else "    "
            item = QListWidgetItem(swatch(category_color(cat)), f"{key}{cat.name}")
            item.setData(Qt.ItemDataRole.UserRole, cat.id)
            self.list.addItem(item)
        self.list.blockSignals(False)
        ids = [c.id for c in categories]
        if keep in ids:
            self.list.setCurrentRow(ids.index(keep))
        elif ids:
            self.list.setCurrentRow(0)
        if self.current_id != keep and self.current_id is not None:
            self.current_changed.emit(self.current_id)

    @property
    def categories(self) -> list[CategoryRecord]:
        return list(self._categories)

    @property
    def current_id(self) -> int | None:
        item = self.list.currentItem()
        return None if item is None else int(item.data(Qt.ItemDataRole.UserRole))

    @property
    def current(self) -> CategoryRecord | None:
        ident = self.current_id
        return next((c for c in self._categories if c.id == ident), None)

    def pick_index(self, index: int) -> bool:
        """Digit keys: 0-based row; False when there is no such class."""
        if not 0 <= index < len(self._categories):
            return False
        self.list.setCurrentRow(index)
        return True

    def select_id(self, category_id: int) -> None:
        ids = [c.id for c in self._categories]
        if category_id in ids:
            self.list.setCurrentRow(ids.index(category_id))

    def ask_add(self) -> None:
        name, ok = QInputDialog.getText(self, "New class", "Class name:")
        if ok and name.strip():
            self.add_requested.emit(name.strip())

    def ask_rename(self) -> None:
        cat = self.current
        if cat is None:
            return
        name, ok = QInputDialog.getText(self, "Rename class", "Class name:", text=cat.name)
        if ok and name.strip() and name.strip() != cat.name:
            self.rename_requested.emit(cat.id, name.strip())

    def ask_color(self) -> None:
        cat = self.current
        if cat is None:
            return
        color = QColorDialog.getColor(category_color(cat), self, f"Colour of {cat.name}")
        if color.isValid():
            self.recolor_requested.emit(cat.id, color.name())

    def _current_item_changed(self, item, _previous) -> None:
        if item is not None:
            self.current_changed.emit(int(item.data(Qt.ItemDataRole.UserRole)))
