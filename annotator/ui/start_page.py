"""The start page: the window when nothing is open (no target, a bad path on the command
line, a project closed or not opened). Open a folder, a project file, the sample photos
or a recent project; drop a folder or images on it; one line says where models go."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QMainWindow,
                               QPushButton, QVBoxLayout, QWidget)

from annotator.ui.opening import DropFilter, recent


def models_line(models_dir: str | None) -> str:
    from annotator.core.models import models_dir as resolve
    return (f"Models go in {resolve(models_dir)} — File ▸ Models… (Ctrl+M, once a folder is "
            "open) downloads them; without one the classic engine answers.")


class StartPage(QWidget):
    def __init__(self, opener, message: str = "", parent=None):
        super().__init__(parent)
        self.opener = opener
        title = QLabel("<h2>Annotator</h2>Label objects with masks: open a folder of images "
                       "to begin, or drop one here.", self)
        title.setWordWrap(True)
        self.message = QLabel(self)
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #d04040; font-weight: bold")
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.open_folder_button = QPushButton("Open folder…", self)
        self.open_project_button = QPushButton("Open project file…", self)
        self.samples_button = QPushButton("Sample photos", self)
        self.samples_button.setToolTip("the example photos shipped with the program")
        buttons = QHBoxLayout()
        for button in (self.open_folder_button, self.open_project_button, self.samples_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        self.recent = QListWidget(self)
        self.recent.setToolTip("double-click (or Enter) to open")
        self.models = QLabel(models_line(opener.models_dir), self)
        self.models.setWordWrap(True)
        self.models.setStyleSheet("color: gray")
        self.models.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(40, 30, 40, 30)
        layout.addWidget(title)
        layout.addWidget(self.message)
        layout.addLayout(buttons)
        layout.addWidget(QLabel("Recent:", self))
        layout.addWidget(self.recent, 1)
        layout.addWidget(self.models)
        self.open_folder_button.clicked.connect(opener.open_folder_dialog)
        self.open_project_button.clicked.connect(opener.open_project_dialog)
        self.samples_button.clicked.connect(lambda: opener.open(None))
        self.recent.itemActivated.connect(lambda item: opener.open(item.data(Qt.ItemDataRole.UserRole)))
        self.set_message(message)
        self.fill_recent()

    def set_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))

    def fill_recent(self) -> None:
        self.recent.clear()
        for path in recent(self.opener.settings):
            item = QListWidgetItem(path if Path(path).exists() else f"{path}  (missing)")
            item.setData(Qt.ItemDataRole.UserRole, path)
            self.recent.addItem(item)
        if not self.recent.count():
            self.recent.addItem("(nothing opened yet)")
            self.recent.item(0).setFlags(Qt.ItemFlag.NoItemFlags)


class StartWindow(QMainWindow):
    """The app's window while nothing is open (its menus: opening.install_start_menus)."""

    def __init__(self, opener, message: str = ""):
        super().__init__()
        self.opener = opener
        self.settings = opener.settings
        self.setWindowTitle("Annotator")
        self.start_page = StartPage(opener, message, self)
        self.setCentralWidget(self.start_page)
        self.resize(900, 600)
        from annotator.ui.actions import install_start_actions
        install_start_actions(self)
        DropFilter(self, opener.open_dropped)
