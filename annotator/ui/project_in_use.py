"""The question asked when a project is already open for writing elsewhere: open it
read-only, take it over, or cancel (annotator.core.project_lock says who holds it)."""
from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from annotator.core.project_lock import ProjectInUseError

READ_ONLY, TAKE_OVER, CANCEL = "read-only", "take-over", "cancel"


class ProjectInUseDialog(QMessageBox):
    def __init__(self, error: ProjectInUseError, parent: QWidget | None = None):
        super().__init__(parent)
        self.setIcon(QMessageBox.Icon.Warning)
        self.setWindowTitle("Project in use")
        self.setText(f"{error.project.name} is open for changes elsewhere: "
                     f"{error.holder.describe()}.")
        self.setInformativeText(
            "Open it read-only to look without changing anything, or take it over: the "
            "other window keeps everything it saved, but its next change will be refused.")
        self.read_only_button = self.addButton("Open read-only",
                                               QMessageBox.ButtonRole.AcceptRole)
        self.take_over_button = self.addButton("Take over",
                                               QMessageBox.ButtonRole.DestructiveRole)
        self.cancel_button = self.addButton(QMessageBox.StandardButton.Cancel)
        self.setDefaultButton(self.read_only_button)
        self.setEscapeButton(self.cancel_button)

    @property
    def choice(self) -> str:
        """READ_ONLY, TAKE_OVER or CANCEL (also for a dialog closed without a button)."""
        clicked = self.clickedButton()
        if clicked is self.read_only_button:
            return READ_ONLY
        if clicked is self.take_over_button:
            return TAKE_OVER
        return CANCEL


def ask_how_to_open(error: ProjectInUseError, parent: QWidget | None = None) -> str:
    dialog = ProjectInUseDialog(error, parent)
    dialog.exec()
    return dialog.choice
