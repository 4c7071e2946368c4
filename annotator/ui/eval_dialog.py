"""File ▸ Evaluate… (Ctrl+Shift+E): a trained plugin beside its plain host on this
project's held-out images (the ones File ▸ Train… kept out of training), one row per
prompt protocol: mIoU, boundary IoU and stability, and the paired difference with its
interval where the eval command reports one.

The run is `annotator eval` in a child process (annotator/core/eval_job.py), polled by a
QTimer; the project is exported on a worker thread (its own connection to the project
file), as the Train dialog does, so the GUI thread never waits. The engines offered are
the plugin engines with a trained plugin whose backbone is installed or pinned, listed by
the composition root's `list_plugins` (reading plugins needs engine code; this package
never imports torch).
"""
from __future__ import annotations

import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QComboBox, QDialog, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QProgressBar, QPushButton, QSpinBox, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from annotator.core.eval_job import (DEFAULT_PROMPTS, DEFAULT_PROTOCOLS, DONE, EVAL_ENGINES,
                                     STOPPED, EvalInputError, EvalJob, Row, compare, held_out)
from annotator.core.models import models_dir
from annotator.core.training_job import clock, export_project_for_training

POLL_MS = 200
SHORTCUT = "Ctrl+Shift+E"
HEAD_TIPS = {"mIoU": "mean IoU with the true mask over the objects' prompts (%)",
             "mBIoU": "mean boundary IoU: the band of 2% of the diagonal along the edges (%)",
             "ST": "stability: how alike an object's masks are over its random prompts (%); "
                   "— for a protocol with one fixed prompt",
             "CI]": "plugin minus host, paired over the same objects and prompts"}


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _paired(p: dict | None) -> str:
    if not p:
        return "—"
    interval = (f" [{p['lo']:+.1f}, {p['hi']:+.1f}]"
                if isinstance(p.get("lo"), (int, float)) and isinstance(p.get("hi"), (int, float))
                else "")
    return _number(p.get("diff"), signed=True) + interval


def _export(project_path: str, out_dir: str):
    """On the worker thread: the COCO export and which of its images are held out."""
    data, images = export_project_for_training(project_path, out_dir)
    return data, images, held_out(data)


class EvalDialog(QDialog):
    def __init__(self, parent: QWidget | None = None, *, project=None,
                 directory: str | Path | None = None,
                 list_plugins: Callable[[Path, dict], list] | None = None,
                 checkpoints: dict[str, str] | None = None,
                 launcher: list[str] | None = None, poll_ms: int = POLL_MS):
        """`list_plugins(folder, pinned checkpoints)` -> [(InstalledPlugin, backbone or
        None)] (annotator.commands.gui.SessionFactory.list_plugins); `launcher` replaces
        `python -m annotator.cli`."""
        super().__init__(parent)
        self.setWindowTitle("Evaluate a plugin")
        self.resize(900, 540)
        self.project, self.list_plugins, self.launcher = project, list_plugins, launcher
        self.directory = models_dir(directory)
        self.checkpoints = dict(checkpoints or {})
        self.plugins: dict[str, list[tuple[Any, Path]]] = {}   # engine -> (plugin, backbone)
        self.job: EvalJob | None = None
        self.export: Future | None = None
        self.held = None                      # eval_job.HeldOut of the running evaluation
        self._pool: ThreadPoolExecutor | None = None
        self._temp: tempfile.TemporaryDirectory | None = None
        self._cancelled = False

        self.engine, self.plugin = QComboBox(self), QComboBox(self)
        self.protocols = QLineEdit(DEFAULT_PROTOCOLS, self)
        self.protocols.setToolTip("comma-separated: tight-box, noisy-box, 1-point, 3-point, "
                                  "5-point, 10-point, center-point")
        self.prompts = QSpinBox(self)
        self.prompts.setRange(1, 1000)
        self.prompts.setValue(DEFAULT_PROMPTS)
        self.prompts.setToolTip("random prompts per object (the papers use 20)")
        self.inputs = QWidget(self)
        form = QFormLayout(self.inputs)
        form.addRow("Engine:", self.engine)
        form.addRow("Plugin:", self.plugin)
        form.addRow("Protocols:", self.protocols)
        form.addRow("Prompts per object:", self.prompts)
        form.addRow("Images:", QLabel("this project's held-out images (those File ▸ Train… "
                                      "kept out of training)", self))

        self.phase, self.times, self.split_info = QLabel(self), QLabel(self), QLabel(self)
        self.split_info.setWordWrap(True)
        self.bar = QProgressBar(self)
        self.table = QTableWidget(0, 0, self)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.result = QLabel(self)
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.start_button, self.stop_button = QPushButton("Start", self), QPushButton("Stop", self)
        close = QPushButton("Close", self)
        close.setObjectName("close")
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        for w in (self.inputs, self.phase, self.bar, self.times, self.split_info):
            layout.addWidget(w)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.result)
        layout.addLayout(buttons)

        self.timer = QTimer(self)
        self.timer.setInterval(poll_ms)
        self.timer.timeout.connect(self._tick)
        self.engine.currentTextChanged.connect(self._fill_plugins)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        close.clicked.connect(self.hide)
        self._set_running(False)
        self.refresh()

    # -- inputs

    def refresh(self, checkpoints: dict[str, str] | None = None) -> None:
        """List the engines that have a trained plugin on an installed (or pinned) backbone."""
        if checkpoints is not None:
            self.checkpoints = dict(checkpoints)
        keep_engine, keep_plugin = self.engine.currentText(), self.plugin.currentData()
        self.plugins = {}
        problem = ""
        try:
            listed = list(self.list_plugins(self.directory, self.checkpoints)) \
                if self.list_plugins is not None else []
        except Exception as exc:     # an unreadable folder must not break the dialog
            listed, problem = [], f"cannot list the trained plugins: {exc}"
        for plugin, backbone in listed:       # newest first
            if plugin.engine in EVAL_ENGINES and backbone is not None:
                self.plugins.setdefault(plugin.engine, []).append((plugin, Path(backbone)))
        self.engine.blockSignals(True)
        self.engine.clear()
        self.engine.addItems([e for e in EVAL_ENGINES if e in self.plugins])
        if self.engine.findText(keep_engine) >= 0:
            self.engine.setCurrentIndex(self.engine.findText(keep_engine))
        self.engine.blockSignals(False)
        self._fill_plugins(self.engine.currentText())
        if keep_plugin is not None:
            index = next((i for i in range(self.plugin.count())
                          if self.plugin.itemData(i) == keep_plugin), -1)
            if index >= 0:
                self.plugin.setCurrentIndex(index)
        if not self.plugins:
            self.phase.setText(problem or f"No trained {' or '.join(EVAL_ENGINES)} plugin whose "
                               "backbone is installed: train one with File ▸ Train… first.")
        elif not self.running:
            self.phase.setText("Choose the plugin, then Start.")
        self._set_running(self.running)

    def _fill_plugins(self, engine: str) -> None:
        self.plugin.clear()
        for plugin, backbone in self.plugins.get(engine, []):
            when = plugin.created[:16].replace("T", " ")
            self.plugin.addItem(f"{plugin.path.name} on {backbone.name}, {when}",
                                (str(plugin.path), str(backbone)))

    # -- running

    @property
    def running(self) -> bool:
        return self.export is not None or (self.job is not None and self.timer.isActive())

    def start(self) -> bool:
        """Export the project and start the evaluation; False, with the reason shown,
        when nothing can be evaluated or a run is going on."""
        if self.running:
            return False
        choice = self.plugin.currentData()
        if self.project is None or choice is None:
            self._show_result("choose a trained plugin (File ▸ Train… makes one)", error=True)
            return False
        self.job, self.held, self._cancelled = None, None, False
        self._clean_temp()
        self._temp = tempfile.TemporaryDirectory(prefix="annotator-eval-",
                                                 ignore_cleanup_errors=True)
        self.table.setRowCount(0)
        self.split_info.setText("")
        self._show_result("")
        self._set_running(True)
        self.bar.setRange(0, 0)
        self.timer.start()
        self._pool = self._pool or ThreadPoolExecutor(1, thread_name_prefix="eval-export")
        self.export = self._pool.submit(_export, str(self.project.path),
                                        str(Path(self._temp.name) / "export"))
        self.phase.setText("Exporting the project's masks…")
        return True

    def _launch(self, data: Path, images: Path) -> None:
        plugin, backbone = self.plugin.currentData()
        self.job = EvalJob(self.engine.currentText(), data, images, backbone, plugin,
                           Path(self._temp.name) / "run", protocols=self.protocols.text(),
                           prompts=self.prompts.value(), launcher=self.launcher)
        try:
            self.job.start()
        except (EvalInputError, OSError) as exc:
            self._end(f"Cannot start the evaluation: {exc}", error=True)
            return
        self.phase.setText("Loading the engines…")

    def stop(self) -> None:
        if self.export is not None:
            self._cancelled = True
        elif self.job is not None:
            self.job.stop()
        self.stop_button.setEnabled(False)
        self.phase.setText("Stopping…")

    def _tick(self) -> None:
        if self.export is not None:
            if not self.export.done():
                return
            future, self.export = self.export, None
            try:
                data, images, self.held = future.result()
            except Exception as exc:    # the export's own errors name the problem
                self._end(f"Cannot export the project: {exc}", error=True)
                return
            if self._cancelled:
                self._end("Stopped before the evaluation started.")
                return
            names = ", ".join(self.held.images[:5]) + (" …" if len(self.held.images) > 5 else "")
            self.split_info.setText(f"Held out: {len(self.held.images)} of "
                                    f"{_count(self.held.of_images, 'image')}, "
                                    f"{_count(self.held.objects, 'object')} ({names or 'none'})")
            if not self.held.objects:
                self._end("The held-out images have no accepted masks yet: label some objects "
                          "on them (or on more images) before evaluating.", error=True)
                return
            self._launch(data, images)
            return
        if self.job is None:
            self.timer.stop()
            return
        self.job.poll()
        self._show_progress()
        if self.job.finished and not self.job.alive:
            self._finish()

    def _show_progress(self) -> None:
        p = self.job.progress
        if p.phase == "evaluating" and p.total:
            self.phase.setText("Evaluating…")
            if p.done:
                self.bar.setRange(0, p.total)
                self.bar.setValue(min(p.done, p.total))
                self.bar.setFormat("object %v / %m  (%p%)")
        left = f" · about {clock(p.eta_s)} left" if p.eta_s is not None and p.done else ""
        self.times.setText(f"elapsed {clock(p.elapsed_s)}{left}")

    def _finish(self) -> None:
        job = self.job
        if job.state == DONE:
            try:
                host, rows = compare(job.results or {}, job.engine)
            except EvalInputError as exc:
                self._end(f"Evaluation failed: {exc}", error=True)
                return
            self._fill_table(host, job.engine, rows)
            objects = _count(self.held.objects, "held-out object") if self.held else "?"
            self._end(f"{job.engine} ({job.plugin.name}) beside {host or 'its host'} on "
                      f"{objects}, {_count(job.prompts, 'prompt')} each; percent, higher is "
                      "better.")
            self.bar.setRange(0, 1)
            self.bar.setValue(1)
        elif job.state == STOPPED:
            self._end("Stopped; no numbers.")
        else:
            self._end(f"Evaluation failed: {job.error}", error=True)

    def _fill_table(self, host: str, engine: str, rows: list[Row]) -> None:
        paired = any(r.paired for r in rows)
        heads = ["Protocol", f"{host} mIoU", f"{engine} mIoU"]
        heads += ["Δ mIoU [95% CI]"] if paired else []
        heads += [f"{host} mBIoU", f"{engine} mBIoU", f"{host} ST", f"{engine} ST", "Objects"]
        self.table.setColumnCount(len(heads))
        self.table.setHorizontalHeaderLabels(heads)
        for c, head in enumerate(heads):
            tip = next((t for k, t in HEAD_TIPS.items() if head.endswith(k)), "")
            self.table.horizontalHeaderItem(c).setToolTip(tip)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            cells = [row.protocol, _number(row.host["miou"]), _number(row.plugin["miou"])]
            cells += [_paired(row.paired)] if paired else []
            cells += [_number(row.host["mbiou"]), _number(row.plugin["mbiou"]),
                      _number(row.host["st"]), _number(row.plugin["st"]),
                      "—" if row.plugin["n"] is None else str(int(row.plugin["n"]))]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()

    def _end(self, text: str, error: bool = False) -> None:
        self.timer.stop()
        self.export = None
        self._set_running(False)
        if self.bar.maximum() == 0:
            self.bar.setRange(0, 1)
        self.phase.setText("Finished." if not error else "Not evaluated.")
        self._show_result(text, error)

    def _show_result(self, text: str, error: bool = False) -> None:
        self.result.setText(text)
        self.result.setStyleSheet("color: #c62828; font-weight: bold" if error else "")

    def _set_running(self, running: bool) -> None:
        self.inputs.setEnabled(not running)
        self.start_button.setEnabled(not running and self.plugin.count() > 0)
        self.stop_button.setEnabled(running)

    def _clean_temp(self) -> None:
        if self._temp is not None:
            self._temp.cleanup()
            self._temp = None

    def shutdown(self, wait_s: float = 3.0) -> None:
        """The window is closing: stop a run and the export, drop the temporary files."""
        self.timer.stop()
        if self.job is not None and self.job.alive:
            self.job.stop(wait=wait_s)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._clean_temp()


def show_eval_dialog(window) -> EvalDialog:
    """File ▸ Evaluate…: one dialog per window, not modal, refreshed each time it opens."""
    from annotator.ui.settings import read_model_choice
    pinned = read_model_choice(window.settings)["checkpoints"]
    dialog = window.eval_dialog
    if dialog is None:
        dialog = EvalDialog(window, project=window.project, directory=window.models_dir,
                            list_plugins=getattr(window.session_factory, "list_plugins", None),
                            checkpoints=pinned)
        window.eval_dialog = dialog
    elif not dialog.running:
        dialog.refresh(pinned)
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog
