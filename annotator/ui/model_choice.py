"""The model picker's lower half: the trained plugins, and which file each engine loads.

The user may pin an engine to one checkpoint (the choosable engines that run without a
plugin) or one trained plugin (the plugin engines, the promptless Auto ones too); the
choice is {"checkpoints": {engine: path}, "plugins": {...}}, exactly the Router's two keyword arguments, saved in the settings and handed to the
session factory (`make_session`). Unpinned engines load what the router picks by
itself, which this panel mirrors to say what "automatic" means.

Plugins are listed by a function from the composition root (annotator/commands/gui.py):
reading them takes engine code that imports torch, which this package may not import.
"""
from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFileDialog, QFormLayout,
                               QHeaderView, QLabel, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from engines import manifest

log = logging.getLogger(__name__)

PLUGIN_COLUMNS = ("Plugin", "Engine", "Backbone", "Trained", "Held-out metrics",
                  "Backbone installed", "Used")
# engines that load files one can pick, and those of them that take a checkpoint file
CHOOSABLE = tuple(info.name for info in manifest.list_engines(choosable=True))
CHECKPOINT_ENGINES = tuple(info.name for info in manifest.list_engines(choosable=True)
                           if not info.plugin_required)
# engines that are nothing without a plugin: "automatic" names the plugin they load, and
# their own catalogued files (pmg-sam's Hiera and U²-Net) are no choice of their own
PLUGIN_ONLY = frozenset(info.name for info in manifest.ENGINES if info.plugin_required)
# engines whose own catalogued file rides along whichever host or plugin answers (sam-mi's
# CLIP): used when installed, never what "automatic" names, so a paired plugin still can be
RIDES_ALONG = frozenset(info.name for info in manifest.ENGINES
                        if info.checkpoints_of and info.plugin_hosts)
BROWSE = ("browse", "")                                # the "Other checkpoint file…" item
Choice = dict[str, dict[str, str]]   # {"checkpoints": {engine: path}, "plugins": {...}}
PluginLister = Callable[[Path, dict], list]   # (folder, pinned checkpoints) -> [(plugin, backbone)]


def copy_choice(choice: Choice | None) -> Choice:
    choice = choice or {}
    return {kind: dict(choice.get(kind) or {}) for kind in ("checkpoints", "plugins")}


def pinned(choice: Choice, engine: str) -> tuple[str, str] | None:
    """("checkpoints" | "plugins", path) that `engine` is pinned to, or None."""
    return next(((kind, files[engine]) for kind, files in choice.items() if engine in files),
                None)


def make_session(factory: Callable[..., Any], on_event: Callable, choice: Choice | None):
    """`factory(on_event)`, pinned to the picker's `choice` when there is one and the
    factory takes it (`checkpoints=`, `plugins=`; test factories take on_event only)."""
    choice = copy_choice(choice)
    if any(choice.values()):
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            params = {}
        if all(k in params for k in choice) or any(
                p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return factory(on_event, **choice)
        log.warning("the session factory takes no model choice; ignoring %s", choice)
    return factory(on_event)


def metrics_text(metrics: dict) -> str:
    """Held-out metrics as "tight-box/miou 0.812, …" (the trainer's validation split)."""
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, (int, float)) else f"{k} {v}"
                     for k, v in sorted(metrics.items())) or "—"


def make_table(parent: QWidget, columns: tuple[str, ...]) -> QTableWidget:
    table = QTableWidget(0, len(columns), parent)
    table.setHorizontalHeaderLabels(columns)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    return table


def fill_row(table: QTableWidget, row: int, cells, tip: str, right: int = -1) -> None:
    for col, text in enumerate(cells):
        item = QTableWidgetItem(text)
        item.setToolTip(tip)
        if col == right:
            item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        table.setItem(row, col, item)


class ModelChoicePanel(QWidget):
    pending_changed = Signal()      # the combo boxes differ from what they showed before

    def __init__(self, parent: QWidget | None = None, *,
                 list_plugins: PluginLister | None = None, choice: Choice | None = None):
        super().__init__(parent)
        self.list_plugins = list_plugins
        self.choice = copy_choice(choice)       # applied: what the engines were built with
        self.pending = copy_choice(choice)      # what the combo boxes say
        self.directory = Path(".")
        self.statuses: list = []
        self.plugins: list[tuple[Any, Path | None]] = []
        self.auto: dict[str, str] = {}          # engine -> what it loads when not pinned
        self.problem = ""                       # why the plugins could not be listed
        self.table = make_table(self, PLUGIN_COLUMNS)
        self.combos: dict[str, QComboBox] = {}
        form = QFormLayout()
        for engine in CHOOSABLE:
            combo = self.combos[engine] = QComboBox(self)
            combo.activated.connect(lambda index, e=engine: self._combo_chosen(e, index))
            form.addRow(f"{engine}:", combo)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Trained plugins (annotator train, or File ▸ Train…):", self))
        layout.addWidget(self.table)
        layout.addWidget(QLabel("Which model each engine loads:", self))
        layout.addLayout(form)

    def set_choice(self, choice: Choice | None) -> None:
        self.choice = copy_choice(choice)
        self.pending = copy_choice(choice)

    @property
    def changed(self) -> bool:
        return self.pending != self.choice

    def refresh(self, statuses: list, directory: Path) -> dict[Path, str]:
        """Show the plugins of `directory` and fill the combo boxes; returns file ->
        "chosen" / "yes" for every file the engines load (the catalogue's Used column)."""
        self.statuses, self.directory = statuses, Path(directory)
        self.plugins = self._read_plugins()
        used = self._resolve()
        self.table.setRowCount(len(self.plugins))
        for row, (plugin, backbone) in enumerate(self.plugins):
            cells = (plugin.path.name, plugin.engine, plugin.backbone_arch,
                     plugin.created[:16].replace("T", " "), metrics_text(plugin.metrics),
                     backbone.name if backbone else "no", used.get(plugin.path, ""))
            fill_row(self.table, row, cells, f"{plugin.path}\n"
                     + (f"backbone: {backbone}" if backbone else "its backbone checkpoint is "
                        "not installed: the engines cannot use it"))
        self.table.resizeColumnsToContents()
        self._fill_combos()
        return used

    def _read_plugins(self) -> list[tuple[Any, Path | None]]:
        self.problem = ""
        if self.list_plugins is None:
            return []
        try:
            return list(self.list_plugins(self.directory, self.choice["checkpoints"]))
        except Exception as exc:    # a folder we cannot read must not break the picker
            log.exception("listing the plugins failed")
            self.problem = f"cannot list the trained plugins: {exc}"
            return []

    def _resolve(self) -> dict[Path, str]:
        """The files the engines load under the applied choice, as the router picks: a
        pinned file, else the first installed catalogue checkpoint, else (plugin engines)
        the newest plugin whose backbone is installed."""
        used = {Path(p): "chosen" for files in self.choice.values() for p in files.values()}
        self.auto = {}
        for st in self.statuses:
            if not st.in_use:
                continue
            if st.entry.engine in PLUGIN_ONLY | RIDES_ALONG:   # frozen files, whichever plugin
                used.setdefault(st.path, "yes")
            elif st.entry.engine not in self.auto:
                self.auto[st.entry.engine] = st.entry.name
                if not pinned(self.choice, st.entry.engine):
                    used[st.path] = "yes"
        for plugin, backbone in self.plugins:     # newest first
            if backbone is not None and plugin.engine not in self.auto:
                self.auto[plugin.engine] = plugin.path.name
                if not pinned(self.choice, plugin.engine):
                    used[plugin.path] = "yes"
        return used

    def _options(self, engine: str) -> list[tuple[str, tuple[str, str] | None]]:
        options = [(f"automatic ({self.auto.get(engine, 'nothing installed')})", None)]
        options += [(st.entry.name, ("checkpoints", str(st.path))) for st in self.statuses
                    if st.entry.engine == engine and st.installed and engine not in PLUGIN_ONLY]
        options += [(f"plugin {p.path.name} on {p.backbone_arch}, {p.created[:10]}"
                     + ("" if backbone else " (backbone missing)"), ("plugins", str(p.path)))
                    for p, backbone in self.plugins if p.engine == engine]
        pin = pinned(self.pending, engine)
        if pin is not None and pin not in [data for _, data in options]:
            options.append((f"file {Path(pin[1]).name}", pin))
        if engine in CHECKPOINT_ENGINES:
            options.append(("Other checkpoint file…", BROWSE))
        return options

    def _fill_combos(self) -> None:
        for engine, combo in self.combos.items():
            options = self._options(engine)
            combo.clear()
            for text, data in options:
                combo.addItem(text, data)
                tip = data[1] if data and data != BROWSE else text
                combo.setItemData(combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
            combo.setCurrentIndex([data for _, data in options].index(pinned(self.pending,
                                                                             engine)))

    def _combo_chosen(self, engine: str, index: int) -> None:
        data = self.combos[engine].itemData(index)
        if data == BROWSE:
            path, _ = QFileDialog.getOpenFileName(
                self, f"Checkpoint for {engine}", str(self.directory),
                "Checkpoints (*.pth *.pt *.bin *.safetensors);;All files (*)")
            data = ("checkpoints", path) if path else pinned(self.pending, engine)
        pending = copy_choice(self.pending)
        for files in pending.values():
            files.pop(engine, None)
        if data:
            pending[data[0]][engine] = data[1]
        self.pending = pending
        self._fill_combos()
        self.pending_changed.emit()
