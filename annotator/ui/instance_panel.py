"""The instance list of the current image: select, show/hide (checkbox), delete, change
class. It only emits requests; the window turns them into undoable commands."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem, QWidget

from annotator.core.dataset import AnnotationRecord, CategoryRecord
from annotator.ui.category_panel import category_color, swatch
from annotator.ui.widgets import list_with_buttons


class InstancePanel(QWidget):
    selection_changed = Signal(list)          # annotation ids
    visibility_changed = Signal(int, bool)    # annotation id, visible
    delete_requested = Signal(list)           # annotation ids
    reclass_requested = Signal(list)          # annotation ids -> the current class

    def __init__(self, parent=None):
        super().__init__(parent)
        self.list = QListWidget(self)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.list.itemSelectionChanged.connect(
            lambda: self.selection_changed.emit(self.selected_ids))
        self.list.itemChanged.connect(self._item_changed)
        list_with_buttons(self, self.list, (
            ("Delete", "Delete the selected instances (Del)",
             lambda: self.delete_requested.emit(self.selected_ids)),
            ("To current class", "Give the selected instances the current class (C)",
             lambda: self.reclass_requested.emit(self.selected_ids))))
        self._hidden: set[int] = set()
        self._ids: list[int] = []

    def set_instances(self, annotations: list[AnnotationRecord],
                      categories: dict[int, CategoryRecord], keep_selection: bool = True) -> None:
        selected = set(self.selected_ids) if keep_selection else set()
        self._ids = [a.id for a in annotations]
        self._hidden &= set(self._ids)
        self.list.blockSignals(True)
        self.list.clear()
        # numbered per image, bottom first (#1 is the first drawn); the id is in the tooltip
        for number, ann in reversed(list(enumerate(annotations, start=1))):   # topmost first
            cat = categories.get(ann.category_id)
            name = cat.name if cat else f"class {ann.category_id}"
            how = f" · {ann.engine}" if ann.engine else ""
            item = QListWidgetItem(swatch(category_color(cat)), f"#{number} {name}{how}")
            item.setToolTip(f"annotation id {ann.id} in the project")
            item.setData(Qt.ItemDataRole.UserRole, ann.id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked if ann.id in self._hidden
                               else Qt.CheckState.Checked)
            self.list.addItem(item)
            item.setSelected(ann.id in selected)
        self.list.blockSignals(False)
        self.selection_changed.emit(self.selected_ids)

    def clear_hidden(self) -> None:
        self._hidden.clear()

    @property
    def selected_ids(self) -> list[int]:
        return [int(i.data(Qt.ItemDataRole.UserRole)) for i in self.list.selectedItems()]

    def is_visible(self, ann_id: int) -> bool:
        return ann_id not in self._hidden

    def select(self, ids: list[int]) -> None:
        wanted = set(ids)
        self.list.blockSignals(True)
        for row in range(self.list.count()):
            item = self.list.item(row)
            item.setSelected(int(item.data(Qt.ItemDataRole.UserRole)) in wanted)
        self.list.blockSignals(False)
        self.selection_changed.emit(self.selected_ids)

    def set_visible(self, ann_id: int, visible: bool) -> None:
        for row in range(self.list.count()):
            item = self.list.item(row)
            if int(item.data(Qt.ItemDataRole.UserRole)) == ann_id:
                item.setCheckState(Qt.CheckState.Checked if visible else Qt.CheckState.Unchecked)

    def _item_changed(self, item: QListWidgetItem) -> None:
        ann_id = int(item.data(Qt.ItemDataRole.UserRole))
        visible = item.checkState() == Qt.CheckState.Checked
        if visible:
            self._hidden.discard(ann_id)
        else:
            self._hidden.add(ann_id)
        self.visibility_changed.emit(ann_id, visible)
