"""Export the project in any registered format (annotator.core.formats.FORMATS)."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox,
                               QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QMessageBox, QPushButton, QWidget)

from annotator.core.errors import CoreError
from annotator.core.export_guard import ExportGuard, ExportRefused
from annotator.core.formats import FORMATS, check_options, get_format
from annotator.core.store import Project


def export_project(project: Project, format_name: str, out: str | Path, *,
                   overwrite: bool = False, **options) -> list[Path]:
    """Write the whole project as `format_name` to `out` (a file for coco, else a folder).
    ValueError for an unknown format or option; ExportRefused for a destination the
    export may not write (core.export_guard); the writer's own errors propagate."""
    spec = get_format(format_name)
    check_options(spec, options)
    out = Path(out)
    if not str(out).strip() or str(out) == ".":
        raise ValueError("choose where to write the export")
    guard = ExportGuard.for_project(project, spec.name, out, spec.output == "folder"
                                    or options.get("split") is not None, overwrite)
    written = spec.write(project.export_dataset(), out, project.image_root,
                         check_paths=guard.check, **options)
    guard.record(written)
    return written


def default_output(project: Project, format_name: str) -> Path:
    spec = get_format(format_name)
    base = project.path.parent / "export"
    return base / ("coco.json" if spec.output == "file" else format_name)


class ExportDialog(QDialog):
    def __init__(self, project: Project, parent: QWidget | None = None,
                 format_name: str = "coco"):
        super().__init__(parent)
        self.setWindowTitle("Export annotations")
        self.project = project
        self.written: list[Path] = []
        self.format = QComboBox(self)
        for name, spec in FORMATS.items():
            self.format.addItem(name, name)
            self.format.setItemData(self.format.count() - 1, spec.description,
                                    Qt.ItemDataRole.ToolTipRole)
        self.description = QLabel(self)
        self.description.setWordWrap(True)
        self.out = QLineEdit(self)
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.out)
        row.addWidget(browse)
        self.tolerance = QDoubleSpinBox(self)
        self.tolerance.setRange(0.0, 20.0)
        self.tolerance.setSingleStep(0.5)
        self.tolerance.setSuffix(" px")
        self.tolerance.setToolTip("Polygon detail: 0 keeps the exact pixel outline")
        form = QFormLayout(self)
        form.addRow("Format:", self.format)
        form.addRow("", self.description)
        form.addRow("Write to:", row)
        form.addRow("Polygon tolerance:", self.tolerance)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.format.currentIndexChanged.connect(self._format_changed)
        self.format.setCurrentIndex(max(0, list(FORMATS).index(format_name)
                                        if format_name in FORMATS else 0))
        self._format_changed()

    @property
    def format_name(self) -> str:
        return self.format.currentData()

    def options(self) -> dict:
        spec = get_format(self.format_name)
        return {"tolerance": self.tolerance.value()} if "tolerance" in spec.options else {}

    def _format_changed(self) -> None:
        spec = get_format(self.format_name)
        self.description.setText(spec.description)
        self.tolerance.setEnabled("tolerance" in spec.options)
        self.out.setText(str(default_output(self.project, spec.name)))

    def _browse(self) -> None:
        spec = get_format(self.format_name)
        if spec.output == "file":
            path, _ = QFileDialog.getSaveFileName(self, "Export to", self.out.text(),
                                                  "JSON (*.json)")
        else:
            path = QFileDialog.getExistingDirectory(self, "Export into folder", self.out.text())
        if path:
            self.out.setText(path)

    def accept(self) -> None:
        """Export; on an error say what went wrong and keep the dialog open."""
        overwrite = False
        while True:
            try:
                opts = self.options()
                check_options(get_format(self.format_name), opts)
                self.written = export_project(self.project, self.format_name, self.out.text(),
                                              overwrite=overwrite, **opts)
            except ExportRefused as exc:
                if exc.overridable and not overwrite and self._confirm_overwrite(str(exc)):
                    overwrite = True
                    continue
                if not exc.overridable:
                    QMessageBox.warning(self, "Export failed", str(exc))
                return
            except (CoreError, ValueError, OSError) as exc:
                QMessageBox.warning(self, "Export failed", str(exc))
                return
            break
        super().accept()

    def _confirm_overwrite(self, problem: str) -> bool:
        """Existing files an earlier export did not write: replace them only if asked."""
        answer = QMessageBox.question(
            self, "Replace files?", problem.replace("give --overwrite", "choose Yes"),
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes
