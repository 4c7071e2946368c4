"""The Train dialog's engine options: one widget per `manifest.EngineOption` of the chosen
engine (a file field with Browse…, or a choice), read as `--option NAME=VALUE` arguments.

Everything comes from the manifest's rows, so an engine's training options appear here by
being declared there (sam-mi: its CLIP file and its stage); nothing here names an engine.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QWidget,
)

from engines import manifest


class EngineOptionsPanel(QWidget):
    """The option rows of every trainable engine; only the current engine's are shown."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.engine = ""
        self.fields: dict[tuple[str, str], QLineEdit | QComboBox] = {}
        self.browse: dict[tuple[str, str], QPushButton] = {}
        self._prefilled: dict[tuple[str, str], str] = {}   # what refresh() last put in a file field
        self._rows: dict[tuple[str, str], int] = {}
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.form = layout
        for info in manifest.list_engines(trainable=True):
            for option in info.options:
                key = (info.name, option.name)
                if option.kind == "file":
                    field = QLineEdit(self)
                    field.setPlaceholderText("empty: the adapter's default (see the tooltip)")
                    button = self.browse[key] = QPushButton("Browse…", self)
                    button.setToolTip(option.help)
                    button.clicked.connect(lambda _=False, k=key, o=option: self._browse(k, o))
                    row = QHBoxLayout()
                    row.addWidget(field)
                    row.addWidget(button)
                    layout.addRow(option.label, row)
                else:
                    field = QComboBox(self)
                    field.addItems(option.choices)
                    field.setCurrentText(option.default)
                    layout.addRow(option.label, field)
                field.setToolTip(option.help)
                field.setObjectName(f"option-{option.name}")
                self.fields[key] = field
                self._rows[key] = layout.rowCount() - 1
        self.show_engine("")

    def show_engine(self, engine: str) -> None:
        """Show the rows of `engine`'s options (none: the panel takes no room)."""
        self.engine = engine
        for (owner, name), row in self._rows.items():
            self.form.setRowVisible(row, owner == engine)
        self.setVisible(any(owner == engine for owner, _ in self._rows))

    def refresh(self, statuses) -> None:
        """Prefill each empty file field (or one still holding the last prefill) with the
        engine's installed catalogue file of the option's arch (sam-mi: ViT-B-16.pt)."""
        for info in manifest.list_engines(trainable=True):
            for option in info.options:
                key = (info.name, option.name)
                if option.kind != "file" or option.catalogue_arch is None:
                    continue
                found = next((str(st.path) for st in statuses if st.installed
                              and st.entry.engine == info.name
                              and st.entry.arch == option.catalogue_arch), "")
                field = self.fields[key]
                if field.text() in ("", self._prefilled.get(key, "")):
                    field.setText(found)
                    self._prefilled[key] = found

    def values(self) -> dict[str, str]:
        """The current engine's options with a value (an empty file field: the adapter's default)."""
        out = {}
        for (owner, name), field in self.fields.items():
            if owner != self.engine:
                continue
            value = field.text().strip() if isinstance(field, QLineEdit) else field.currentText()
            if value:
                out[name] = value
        return out

    def arguments(self) -> tuple[str, ...]:
        return tuple(arg for name, value in self.values().items()
                     for arg in ("--option", f"{name}={value}"))

    def problem(self) -> str | None:
        """A file option that names no file: the line the dialog shows instead of starting."""
        for info in manifest.list_engines(trainable=True):
            if info.name != self.engine:
                continue
            for option in info.options:
                value = self.values().get(option.name, "")
                if option.kind == "file" and value and not Path(value).is_file():
                    return f"{option.label.rstrip(':')}: no file at {value!r}"
        return None

    def _browse(self, key: tuple[str, str], option: manifest.EngineOption) -> None:
        field = self.fields[key]
        path, _ = QFileDialog.getOpenFileName(self, option.label.rstrip(":"), field.text(),
                                              "Checkpoints (*.pt *.pth *.bin *.safetensors);;"
                                              "All files (*)")
        if path:
            field.setText(path)
