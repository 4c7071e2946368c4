"""The class panel: the project's categories with their colours and digit keys. Adding,
renaming and recolouring go through undoable commands (the window passes them on)."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QColorDialog, QInputDialog, QListWidget,
                               QListWidgetItem, QPushButton, QWidget)

from annotator.core.dataset import CategoryRecord
from annotator.ui.widgets import list_with_buttons

# Colours for categories stored without one: a qualitative palette of saturated hues
# spread around the colour wheel, neighbours in the list far apart. It has no browns,
# greys, skin or sky tones (common in photos, where a mask in them disappears) and no
# cyan or amber (the candidates' colours, candidate_layer.py). Every class's colour can be
# changed (Classes ▸ Colour…); masks also get a contrasting ring (mask_style.py).
PALETTE = ("#ff00ff", "#39ff14", "#2f5bff", "#ffff00", "#9d00ff", "#00c853", "#ff1744",
           "#c6ff00", "#0000ff", "#26ffc9", "#cc1f67")


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
    delete_requested = Signal(int)                # id (the window asks what happens next)
    order_changed = Signal(list)                  # category ids, top first

    def __init__(self, parent=None):
        super().__init__(parent)
        self.list = QListWidget(self)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.list.currentItemChanged.connect(self._current_item_changed)
        self.list.itemDoubleClicked.connect(lambda _item: self.ask_rename())
        list_with_buttons(self, self.list, (
            ("Add…", "", self.ask_add),
            ("Rename…", "", self.ask_rename),
            ("Colour…", "", self.ask_color),
            ("Delete…", "delete the class (its annotations move to another class or go "
                        "with it; Ctrl+Z undoes)", self.ask_delete),
            ("▲", "move the class up (digit keys follow the list)", lambda: self.move(-1)),
            ("▼", "move the class down", lambda: self.move(1))))
        for button in self.findChildren(QPushButton):      # the panel stays narrow
            if button.text() in ("▲", "▼"):
                button.setMaximumWidth(26)
            else:
                button.setMinimumWidth(0)
                button.setMaximumWidth(button.fontMetrics().horizontalAdvance(button.text()) + 14)
        self._categories: list[CategoryRecord] = []
        self.order: list[int] = []        # category ids top first (the rest: by id, after)

    def set_categories(self, categories: list[CategoryRecord]) -> None:
        keep = self.current_id
        rank = {ident: i for i, ident in enumerate(self.order)}
        categories = sorted(categories, key=lambda c: (rank.get(c.id, len(rank)), c.id))
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

    def move(self, step: int) -> bool:
        """Move the current class up (-1) or down (+1) in the list."""
        ids = [c.id for c in self._categories]
        ident = self.current_id
        if ident is None or not 0 <= ids.index(ident) + step < len(ids):
            return False
        i = ids.index(ident)
        ids[i], ids[i + step] = ids[i + step], ids[i]
        self.order = ids
        self.set_categories(self._categories)
        self.order_changed.emit(list(ids))
        return True

    def ask_delete(self) -> None:
        if self.current is not None:
            self.delete_requested.emit(self.current.id)

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
