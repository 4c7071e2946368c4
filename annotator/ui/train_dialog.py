"""File ▸ Train… (Ctrl+Shift+T): fine-tune a plugin engine on this project's accepted
masks, or on a COCO file, with progress, loss, time left and a log; "heads only" trains
an engine's heads alone where its adapter can (the manifest's `heads_only`), and an
engine's declared training options (the manifest's `options`: sam-mi's CLIP file and
stage) are rows of their own (annotator/ui/train_options.py).

The run is `annotator train` in a child process (annotator/core/training_job.py) and a
QTimer polls its event file, so the GUI thread never waits on it. Exporting the project
can take seconds on a big one, so that runs on a worker thread with its own connection
to the project file. The plugin lands in `<models>/plugins/ENGINE/<run>/`, where the
router and the model picker (File ▸ Models…) find it. Closing the dialog only hides it:
the run goes on, and the window stops it when it closes.
"""
from __future__ import annotations

import shlex
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QFileDialog, QFormLayout,
                               QGridLayout, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit,
                               QProgressBar, QPushButton, QRadioButton, QSpinBox, QVBoxLayout,
                               QWidget)

from annotator.core.models import CatalogueError, model_statuses, models_dir
from annotator.core.training_job import (DONE, STOPPED, TRAINABLE_ENGINES, TrainingJob, clock,
                                         default_run_dir, describe_event,
                                         export_project_for_training, feature_cache_dir)
from annotator.ui.train_options import EngineOptionsPanel
from engines import manifest

POLL_MS = 200
BACKBONE_ENGINES = manifest.plugin_host_engines()      # what a plugin sits on
# (engine, arch) of the catalogued frozen file an engine's own plugin pairs with (pmg-sam)
OWN_BACKBONES = {(info.name, info.backbone_files[0]) for info in manifest.ENGINES
                 if info.backbone_files}
SHORTCUT = "Ctrl+Shift+T"
# engines whose adapter trains the heads alone on request (`--option heads_only=true`)
HEADS_ONLY_ENGINES = frozenset(info.name for info in manifest.ENGINES if info.heads_only)
HEADS_ONLY_OPTION = ("--option", "heads_only=true")
HEADS_ONLY_TIP = (
    "Train the heads only: no LoRA on the frozen encoder, whose features are computed once "
    "per image and cached (--cache-dir), so a step skips the encoder's forward and backward "
    "passes. Saves most of the time per step and most of the memory, and the plugin is "
    "smaller; costs accuracy where the encoder would have had to adapt to your images "
    "(end to end, the default, trains the LoRA too). Only for engines whose plugin has "
    "a LoRA part.")


def _spin(parent: QWidget, most: int, value: int) -> QSpinBox:
    spin = QSpinBox(parent)
    spin.setRange(1, most)
    spin.setValue(value)
    return spin


def _row(*widgets) -> QHBoxLayout:
    row = QHBoxLayout()
    for w in widgets:
        row.addWidget(w)
    return row


class TrainDialog(QDialog):
    trained = Signal(str)           # the plugin a finished run wrote
    open_models = Signal()          # "Open the model picker"

    def __init__(self, parent: QWidget | None = None, *, project=None,
                 directory: str | Path | None = None, entries=None,
                 launcher: list[str] | None = None, poll_ms: int = POLL_MS):
        """`launcher` replaces `python -m annotator.cli` (tests run a stand-in trainer)."""
        super().__init__(parent)
        self.setWindowTitle("Train a plugin")
        self.resize(720, 620)
        self.project, self.entries, self.launcher = project, entries, launcher
        self.directory = models_dir(directory)
        self.job: TrainingJob | None = None
        self.export: Future | None = None
        self.out_dir: Path | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._temp: tempfile.TemporaryDirectory | None = None
        self._cancelled = False

        self.engine = QComboBox(self)
        self.engine.addItems(TRAINABLE_ENGINES)
        self.backbone = QComboBox(self)
        self.browse_backbone = QPushButton("Browse…", self)
        self.from_project = QRadioButton("this project's accepted masks", self)
        self.from_coco = QRadioButton("a COCO file:", self)
        self.coco_path, self.images_path = QLineEdit(self), QLineEdit(self)
        self.coco_path.setPlaceholderText("instances file (.json)")
        self.images_path.setPlaceholderText("its images folder")
        browse_coco, browse_images = QPushButton("Browse…", self), QPushButton("Browse…", self)
        self.steps, self.batch_size = _spin(self, 1_000_000, 500), _spin(self, 512, 4)
        self.heads_only = QCheckBox("heads only (no LoRA, the encoder's features cached)", self)
        self.heads_only.setToolTip(HEADS_ONLY_TIP)
        self.inputs = QWidget(self)
        self.options = EngineOptionsPanel(self.inputs)
        form = QFormLayout(self.inputs)
        form.addRow("Engine:", self.engine)
        form.addRow("Backbone:", _row(self.backbone, self.browse_backbone))
        data = QGridLayout()
        data.addWidget(self.from_project, 0, 0, 1, 3)
        data.addWidget(self.from_coco, 1, 0)
        data.addWidget(self.coco_path, 1, 1)
        data.addWidget(browse_coco, 1, 2)
        data.addWidget(self.images_path, 2, 1)
        data.addWidget(browse_images, 2, 2)
        form.addRow("Training data:", data)
        form.addRow("Steps:", self.steps)
        form.addRow("Batch size:", self.batch_size)
        form.addRow("Mode:", self.heads_only)
        form.addRow(self.options)

        self.phase, self.numbers, self.times = QLabel(self), QLabel(self), QLabel(self)
        self.bar = QProgressBar(self)
        self.log = QPlainTextEdit(self)
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.result = QLabel(self)
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.start_button, self.stop_button = QPushButton("Start", self), QPushButton("Stop", self)
        self.models_button = QPushButton("Open the model picker", self)
        close = QPushButton("Close", self)
        close.setObjectName("close")
        buttons = _row(self.start_button, self.stop_button, self.models_button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        for w in (self.inputs, self.phase, self.bar, self.numbers, self.times, self.log,
                  self.result):
            layout.addWidget(w)
        layout.addLayout(buttons)

        self.timer = QTimer(self)
        self.timer.setInterval(poll_ms)
        self.timer.timeout.connect(self._tick)
        self.browse_backbone.clicked.connect(self._browse_backbone)
        browse_coco.clicked.connect(lambda: self._browse_file(self.coco_path))
        browse_images.clicked.connect(lambda: self._browse_folder(self.images_path))
        self.start_button.clicked.connect(self.start)
        self.engine.currentTextChanged.connect(self._engine_changed)
        self.stop_button.clicked.connect(self.stop)
        self.models_button.clicked.connect(self.open_models)
        close.clicked.connect(self.hide)
        self.from_project.setEnabled(project is not None)
        (self.from_project if project is not None else self.from_coco).setChecked(True)
        self.refresh_backbones()
        self._engine_changed(self.engine.currentText())
        self._set_running(False)
        self.models_button.setVisible(False)
        self.phase.setText("Choose what to train, then Start. The run goes on if this "
                           "window is closed.")

    # -- inputs

    def _engine_changed(self, engine: str) -> None:
        """The heads-only box is offered only where the engine's adapter has the mode."""
        offered = engine in HEADS_ONLY_ENGINES
        self.heads_only.setEnabled(offered)
        if not offered:
            self.heads_only.setChecked(False)
        self.options.show_engine(engine)

    @property
    def train_options(self) -> tuple[str, ...]:
        """The `--option` arguments the chosen modes and engine options add to `annotator train`."""
        offered = self.engine.currentText() in HEADS_ONLY_ENGINES
        heads = HEADS_ONLY_OPTION if offered and self.heads_only.isChecked() else ()
        return heads + self.options.arguments()

    def refresh_backbones(self, pinned: dict[str, str] | None = None) -> None:
        """Installed SAM / SAM 2 checkpoints, the Hiera file of an engine with frozen
        files of its own (pmg-sam), and files pinned or browsed to."""
        keep = self.backbone.currentData()
        try:
            statuses = model_statuses(self.directory, self.entries)
        except CatalogueError:
            statuses = []
        self.options.refresh(statuses)
        files = [(st.entry.name, str(st.path)) for st in statuses
                 if st.installed and (st.entry.engine in BACKBONE_ENGINES
                                      or (st.entry.engine, st.entry.arch) in OWN_BACKBONES)]
        files += [(f"{engine}: {Path(p).name}", p) for engine, p in (pinned or {}).items()
                  if engine in BACKBONE_ENGINES]
        files += [(self.backbone.itemText(i), self.backbone.itemData(i))
                  for i in range(self.backbone.count())]     # browsed to before
        self.backbone.clear()
        for text, path in files:
            if path and self.backbone.findData(path) < 0:
                self.backbone.addItem(text, path)
        if keep is not None and self.backbone.findData(keep) >= 0:
            self.backbone.setCurrentIndex(self.backbone.findData(keep))
        elif self.backbone.currentIndex() < 0 and self.backbone.count():
            self.backbone.setCurrentIndex(0)   # with a placeholder set, Qt selects nothing
        self.backbone.setPlaceholderText("no SAM / SAM 2 checkpoint installed: Browse…, or "
                                         "File ▸ Models… to download one")

    def add_backbone(self, path: str | Path) -> None:
        index = self.backbone.findData(str(path))
        if index < 0:
            self.backbone.addItem(f"file: {Path(path).name}", str(path))
            index = self.backbone.count() - 1
        self.backbone.setCurrentIndex(index)

    def _browse_backbone(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SAM / SAM 2 checkpoint", str(self.directory),
                                              "Checkpoints (*.pth *.pt);;All files (*)")
        if path:
            self.add_backbone(path)

    def _browse_file(self, field: QLineEdit) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "COCO instances file", field.text(),
                                              "COCO JSON (*.json);;All files (*)")
        if path:
            field.setText(path)
            self.from_coco.setChecked(True)

    def _browse_folder(self, field: QLineEdit) -> None:
        path = QFileDialog.getExistingDirectory(self, "Images folder", field.text())
        if path:
            field.setText(path)

    def _problem(self) -> str | None:
        backbone = self.backbone.currentData()
        if not backbone or not Path(backbone).is_file():
            return "choose the SAM / SAM 2 checkpoint the plugin will sit on (Browse…)"
        problem = self.options.problem()
        if problem:
            return problem
        if self.from_coco.isChecked():
            if not Path(self.coco_path.text()).is_file():
                return f"no COCO file at {self.coco_path.text()!r}"
            if not Path(self.images_path.text()).is_dir():
                return f"no images folder at {self.images_path.text()!r}"
        return None

    # -- running

    @property
    def running(self) -> bool:
        return self.export is not None or (self.job is not None and self.timer.isActive())

    def start(self) -> bool:
        """Export (if training on the project) and start the trainer; False, with the
        reason shown, when an input is missing or a run is going on."""
        if self.running:
            return False
        problem = self._problem()
        if problem:
            self._show_result(problem, error=True)
            return False
        self.job, self._cancelled = None, False
        self.out_dir = default_run_dir(self.directory, self.engine.currentText())
        self.log.clear()
        self._show_result("")
        self.models_button.setVisible(False)
        self._set_running(True)
        self.bar.setRange(0, 0)
        self.timer.start()                  # before _launch, whose failure stops it
        if self.from_project.isChecked():
            self._temp = tempfile.TemporaryDirectory(prefix="annotator-train-")
            self._pool = self._pool or ThreadPoolExecutor(1, thread_name_prefix="train-export")
            self.export = self._pool.submit(export_project_for_training, self.project.path,
                                            self._temp.name)
            self.phase.setText("Exporting the project's masks…")
        else:
            self._launch(self.coco_path.text(), self.images_path.text())
        return True

    def _launch(self, data: str | Path, images: str | Path) -> None:
        self.job = TrainingJob(self.engine.currentText(), data, images,
                               self.backbone.currentData(), self.out_dir, self.steps.value(),
                               self.batch_size.value(),
                               extra_args=("--cache-dir", str(feature_cache_dir()),
                                           *self.train_options),
                               launcher=self.launcher)
        self.log.appendPlainText("$ " + shlex.join(self.job.argv))
        try:
            self.job.start()
        except OSError as exc:
            self._end(f"Cannot start the trainer: {exc}", error=True)
            return
        self.phase.setText("Starting the trainer (loading the models)…")

    def stop(self) -> None:
        """Ask the run to stop; it ends at the trainer's next step (killed if it does
        not within the job's timeout). Returns at once."""
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
                data, images = future.result()
            except Exception as exc:    # the export's own errors name the problem
                self._end(f"Cannot export the project for training: {exc}", error=True)
                return
            if self._cancelled:
                self._end("Stopped before the trainer started; no plugin was written.")
                return
            self._launch(data, images)
            return
        if self.job is None:
            self.timer.stop()
            return
        for line in filter(None, map(describe_event, self.job.poll())):
            self.log.appendPlainText(line)
        self._show_progress()
        if self.job.finished and not self.job.alive:
            self._finish()

    def _show_progress(self) -> None:
        p = self.job.progress
        if p.phase in ("encoding", "training", "finishing", "done") and p.total:
            self.bar.setRange(0, p.total)
            self.bar.setValue(min(p.done, p.total))
            self.bar.setFormat(("caching features %v / %m" if p.phase == "encoding"
                                else "step %v / %m") + "  (%p%)")
            self.phase.setText({"encoding": "Caching the frozen backbone's features…",
                                "training": "Training…",
                                "finishing": "Validating and saving the plugin…",
                                "done": "Finishing…"}[p.phase])
        if p.loss is not None:
            self.numbers.setText(f"loss {p.loss:.4f} · lr {p.lr or 0:.2e}")
        left = f" · about {clock(p.eta_s)} left" if p.eta_s is not None else ""
        self.times.setText(f"elapsed {clock(p.elapsed_s)}{left}")

    def _finish(self) -> None:
        job = self.job
        if job.state == DONE and job.result_plugin is not None:
            self._end(f"Plugin saved: {job.result_plugin}\nIt is listed in File ▸ Models… "
                      f"(Ctrl+M), where you can choose it for {job.engine}; left on "
                      "automatic, the engine loads the newest plugin whose backbone is "
                      "installed.")
            self.models_button.setVisible(True)
            self.trained.emit(str(job.result_plugin))
        elif job.state == STOPPED:
            self._end("Stopped; no plugin was written.")
        else:
            self._end(f"Training failed: {job.error or 'the trainer gave no result'}\n"
                      f"(log: {job.log_path})", error=True)

    def _end(self, text: str, error: bool = False) -> None:
        self.timer.stop()
        self.export = None
        self._set_running(False)
        if self.bar.maximum() == 0:
            self.bar.setRange(0, 1)
        self.phase.setText("Finished." if not error else "Not trained.")
        self._show_result(text, error)
        if self._temp is not None:
            self._temp.cleanup()
            self._temp = None

    def _show_result(self, text: str, error: bool = False) -> None:
        self.result.setText(text)
        self.result.setStyleSheet("color: #c62828; font-weight: bold" if error else "")

    def _set_running(self, running: bool) -> None:
        self.inputs.setEnabled(not running)
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def shutdown(self, wait_s: float = 3.0) -> None:
        """The window is closing: stop a run (waiting a little for it) and the export."""
        self.timer.stop()
        if self.job is not None and self.job.alive:
            self.job.stop(wait=wait_s)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def show_train_dialog(window) -> TrainDialog:
    """File ▸ Train…: one dialog per window, not modal, so labelling goes on meanwhile."""
    from annotator.ui.model_dialog import show_model_dialog
    from annotator.ui.settings import read_model_choice
    dialog = window.train_dialog
    if dialog is None:
        dialog = TrainDialog(window, project=window.project, directory=window.models_dir)
        dialog.open_models.connect(lambda: show_model_dialog(window))
        dialog.trained.connect(lambda path: _trained(window, path))
        window.train_dialog = dialog
    if not dialog.running:
        dialog.refresh_backbones(read_model_choice(window.settings)["checkpoints"])
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog


def _trained(window, path: str) -> None:
    """A run wrote a plugin: the running engines keep the routes they resolved, so restart
    them (the next click then goes where the router sends it with this plugin there), and
    refresh the dialogs that list plugins."""
    from annotator.ui.settings import read_model_choice
    if window.reload_engines():
        window.statusBar().showMessage(f"trained {Path(path).name}; engines restarted, so "
                                       "the next click uses it where the router picks it", 10000)
    if window.model_dialog is not None:
        window.model_dialog.refresh()
    dialog = getattr(window, "eval_dialog", None)
    if dialog is not None and not dialog.running:
        dialog.refresh(read_model_choice(window.settings)["checkpoints"])
