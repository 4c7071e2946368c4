"""The image list: one row per image with its embedding state, instance count (and
pending candidates: "3 · 5 cand") and review mark. The window feeds it records and
states; it emits the image the user picked."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTreeWidget, QTreeWidgetItem

from annotator.core.dataset import ImageRecord

# Embedding states as the service reports them, and how the list says them.
STATE_TEXT = {"": "not embedded", "embedding": "embedding…", "ready": "ready",
              "failed": "failed", "cancelled": "not embedded"}
STATE_COLOR = {"ready": QColor(60, 160, 60), "embedding": QColor(200, 140, 0),
               "failed": QColor(200, 40, 40)}
COL_NAME, COL_COUNT, COL_STATE, COL_REVIEWED = range(4)


class ImageList(QTreeWidget):
    image_chosen = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setHeaderLabels(["Image", "#", "Embedding", "✓"])
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)   # keys belong to the canvas shortcuts
        self._rows: dict[int, QTreeWidgetItem] = {}
        self._order: list[int] = []
        self._states: dict[int, str] = {}
        self._errors: dict[int, str] = {}
        self.itemClicked.connect(self._clicked)
        header = self.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Stretch)
        for col in (COL_COUNT, COL_STATE, COL_REVIEWED):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)

    def set_images(self, images: list[ImageRecord], counts: dict[int, int],
                   pending: dict[int, int] | None = None) -> None:
        self.clear()
        self._rows.clear()
        self._order = [img.id for img in images]
        for img in images:
            row = QTreeWidgetItem([img.file_name, "", "", ""])
            row.setData(COL_NAME, Qt.ItemDataRole.UserRole, img.id)
            row.setToolTip(COL_NAME, img.file_name)
            self.addTopLevelItem(row)
            self._rows[img.id] = row
            self.update_image(img, counts.get(img.id, 0), (pending or {}).get(img.id, 0))

    @property
    def image_ids(self) -> list[int]:
        return list(self._order)

    def update_image(self, img: ImageRecord, count: int, pending: int = 0) -> None:
        row = self._rows.get(img.id)
        if row is None:
            return
        row.setText(COL_COUNT, f"{count} · {pending} cand" if pending else str(count))
        row.setToolTip(COL_COUNT, f"{count} annotation(s), {pending} candidate(s) to review")
        row.setText(COL_REVIEWED, "✓" if img.reviewed else "")
        self._paint_state(img.id)

    def set_state(self, image_id: int, state: str, error: str = "") -> None:
        if state == "cancelled" and self._states.get(image_id) == "ready":
            return   # a cancelled re-open does not forget a finished embedding
        self._states[image_id] = state
        self._errors[image_id] = error
        self._paint_state(image_id)

    def state(self, image_id: int) -> str:
        return self._states.get(image_id, "")

    def _paint_state(self, image_id: int) -> None:
        row = self._rows.get(image_id)
        if row is None:
            return
        state = self._states.get(image_id, "")
        row.setText(COL_STATE, STATE_TEXT.get(state, state))
        row.setForeground(COL_STATE, STATE_COLOR.get(state, QColor(130, 130, 130)))
        row.setToolTip(COL_STATE, self._errors.get(image_id) or STATE_TEXT.get(state, state))

    def select(self, image_id: int) -> None:
        row = self._rows.get(image_id)
        if row is not None:
            self.setCurrentItem(row)
            self.scrollToItem(row)

    def neighbour(self, image_id: int | None, step: int) -> int | None:
        """The image `step` rows away (clamped to the list); None for an empty list."""
        if not self._order:
            return None
        if image_id not in self._order:
            return self._order[0]
        i = self._order.index(image_id) + step
        return self._order[max(0, min(len(self._order) - 1, i))]

    def following(self, image_id: int | None, n: int) -> list[int]:
        """Up to `n` images after `image_id` (what to embed ahead)."""
        if image_id not in self._order:
            return self._order[:n]
        i = self._order.index(image_id)
        return self._order[i + 1:i + 1 + n]

    def _clicked(self, row: QTreeWidgetItem, _column: int) -> None:
        self.image_chosen.emit(int(row.data(COL_NAME, Qt.ItemDataRole.UserRole)))
