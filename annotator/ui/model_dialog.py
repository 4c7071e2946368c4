"""File ▸ Models… (Ctrl+M): the catalogue with what is installed, the trained plugins,
which model each engine loads (the user can pin one per engine: the choice is saved and
the router is built with it), and downloads with a progress dialog.

A download runs on its own QThread (never the GUI thread). Cancel sets a flag that the
downloader's progress callback turns into an exception, so engines.files.downloader stops at the
next chunk and keeps its resumable `.part`; the destination is only ever written by the
downloader's final verified rename. After a download the window can rebuild its engines
(`reload_engines`) so the router sees the new file.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QThread, Qt, Signal
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QMessageBox,
                               QProgressDialog, QPushButton, QVBoxLayout, QWidget)

from annotator.core.models import (CatalogueError, DownloadError, ModelEntry, ModelStatus,
                                   download_model, model_statuses, models_dir, partial_path)
from annotator.ui.model_choice import (Choice, ModelChoicePanel, PluginLister, copy_choice,
                                       fill_row, make_table)

log = logging.getLogger(__name__)

COLUMNS = ("Model", "Engine", "Arch", "Size (MB)", "Installed", "Used")
PROGRESS_STEPS = 1000     # QProgressDialog holds ints: byte counts of multi-GB files overflow
# A smaller chunk than the downloader's default so that Cancel takes effect quickly.
DOWNLOAD_OPTIONS = {"chunk_size": 256 * 1024, "timeout": 30.0}
_QUEUED = Qt.ConnectionType.QueuedConnection
_ORPHANS: set[QThread] = set()   # threads still stopping after their dialog was shut down


class DownloadCancelled(Exception):
    """Raised from the progress callback to stop the downloader (the .part is kept)."""


class DownloadThread(QThread):
    """Runs one download; when it ends, `path`, `error` or `was_cancelled` says how."""
    progressed = Signal(object, object)    # bytes done, total or None (Python ints)

    def __init__(self, entry: ModelEntry, job: Callable[..., Path]):
        super().__init__()
        self.entry = entry
        self._job = job
        self._stop = threading.Event()
        self.path: Path | None = None
        self.error: str | None = None
        self.was_cancelled = False

    def cancel(self) -> None:
        self._stop.set()

    @property
    def cancel_requested(self) -> bool:
        return self._stop.is_set()

    def _report(self, done: int, total: int | None) -> None:   # on this thread
        if self._stop.is_set():
            raise DownloadCancelled()
        self.progressed.emit(done, total)

    def run(self) -> None:
        try:
            self.path = Path(self._job(self.entry, progress=self._report))
        except DownloadCancelled:
            self.was_cancelled = True
        except DownloadError as exc:
            self.error = str(exc)
        except Exception as exc:    # a bug or OS error must reach the user, not vanish here
            log.exception("downloading %s failed", self.entry.name)
            self.error = f"downloading {self.entry.name} failed: {exc}"


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f}"


class ModelDialog(QDialog):
    download_finished = Signal(str, str)    # model name, installed path
    choice_changed = Signal(object)         # the applied choice (see `apply_choice`)

    def __init__(self, parent: QWidget | None = None, *, directory: str | Path | None = None,
                 entries: list[ModelEntry] | None = None, current_engine: str = "",
                 reload_engines: Callable[[], bool] | None = None,
                 download_fn: Callable[..., Path] | None = None,
                 choice: Choice | None = None, apply_choice: Callable[[Choice], bool] | None = None,
                 list_plugins: PluginLister | None = None):
        """`choice`: the files engines are pinned to ({"checkpoints": {engine: path},
        "plugins": {...}}); `apply_choice(choice)` saves it and restarts the engines;
        `list_plugins(folder, pinned checkpoints)` -> [(InstalledPlugin, backbone or
        None)] comes from the composition root (reading plugins imports torch)."""
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(820, 640)
        self.directory = models_dir(directory)
        self.entries = entries              # None: the shipped catalogue, read on refresh
        self.reload_engines = reload_engines
        self.download_fn = download_fn or download_model
        self.download_options = dict(DOWNLOAD_OPTIONS)
        self.statuses: list[ModelStatus] = []
        self.thread: DownloadThread | None = None
        self.restart_when_done = False      # set by start_download
        self.progress: QProgressDialog | None = None
        self.apply_choice_fn = apply_choice

        self.engine_label = QLabel(self)
        folder = QLabel(f"Models folder: {self.directory}", self)
        folder.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table = make_table(self, COLUMNS)
        self.table.horizontalHeaderItem(5).setToolTip(
            "each engine loads the model chosen below, else the first installed one of "
            "its kind (a model installed just now is used after the engines restart)")
        self.choices = ModelChoicePanel(self, list_plugins=list_plugins, choice=choice)
        self.description = QLabel(self)
        self.description.setWordWrap(True)
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        self.download_button = QPushButton("Download", self)
        self.restart_button = QPushButton("Restart engines", self)
        self.restart_button.setToolTip("stop the engines and start them again, so that "
                                       "newly installed models are used")
        self.apply_button = QPushButton("Use the chosen models", self)
        self.apply_button.setToolTip("save the choice and restart the engines with it")
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        close.rejected.connect(self.reject)
        buttons = QHBoxLayout()
        for button in (self.download_button, self.restart_button, self.apply_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        for widget in (self.engine_label, folder, self.table, self.description, self.choices,
                       self.status):
            layout.addWidget(widget)
        layout.addLayout(buttons)

        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.download_button.clicked.connect(lambda: self.start_download())
        self.restart_button.clicked.connect(self.restart_engines)
        self.apply_button.clicked.connect(self.apply_choice)
        self.choices.pending_changed.connect(self._update_buttons)
        self.set_current_engine(current_engine)
        self.refresh()

    # -- the list

    def set_current_engine(self, name: str) -> None:
        name = name.strip() or "—"
        self.engine_label.setText(f"Engine that answered last: {name}")

    def refresh(self) -> None:
        """Read the catalogue, the models folder and its plugins again (no hashing of
        checkpoints; a plugin's backbone is matched by a cheap identity)."""
        keep = self.selected_status()
        try:
            self.statuses = model_statuses(self.directory, self.entries)
        except CatalogueError as exc:
            self.statuses = []
            self.status.setText(str(exc))
        used = self.choices.refresh(self.statuses, self.directory)
        self.table.setRowCount(len(self.statuses))
        for row, st in enumerate(self.statuses):
            e = st.entry
            installed = "yes" if st.installed else \
                (f"no ({_mb(st.partial_bytes)} MB partial)" if st.partial_bytes else "no")
            cells = (e.name, e.engine, e.arch, "?" if e.size is None else _mb(e.size),
                     installed, used.get(st.path, ""))
            tip = "\n".join(x for x in (e.description, f"file: {e.filename}",
                                        f"license: {e.license}", e.note or "") if x)
            fill_row(self.table, row, cells, tip, right=3)
        self.table.resizeColumnsToContents()
        if self.choices.problem:
            self.status.setText(self.choices.problem)
        names = [st.entry.name for st in self.statuses]
        if names:
            self.select(keep.entry.name if keep and keep.entry.name in names else names[0])
        self._update_buttons()

    # -- which model each engine loads

    def apply_choice(self) -> bool:
        """Make the chosen models the engines' (saved, and the engines restarted by
        `apply_choice`). False when there was nothing to restart or it failed."""
        if self.thread is not None:
            self.status.setText("wait for the download to end first")
            return False
        choice = copy_choice(self.choices.pending)
        self.choices.set_choice(choice)
        if self.apply_choice_fn is None:
            ok = False
            self.status.setText("nothing here applies the choice (no window)")
        else:
            ok = bool(self.apply_choice_fn(choice))
            self.status.setText("engines restarted with the chosen models" if ok else
                                "choice saved: the engines use it when they next start")
        self.choice_changed.emit(copy_choice(choice))
        self.refresh()
        return ok

    def select(self, name: str) -> bool:
        for row, st in enumerate(self.statuses):
            if st.entry.name == name:
                self.table.selectRow(row)
                return True
        return False

    def selected_status(self) -> ModelStatus | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows or rows[0].row() >= len(self.statuses):
            return None
        return self.statuses[rows[0].row()]

    def _update_buttons(self) -> None:
        st = self.selected_status()
        busy = self.thread is not None
        self.download_button.setEnabled(bool(st and not st.installed and not busy))
        self.download_button.setText("Resume download" if st and st.partial_bytes
                                     else "Download")
        self.restart_button.setEnabled(self.reload_engines is not None and not busy)
        self.apply_button.setEnabled(self.choices.changed and not busy)
        if st is not None:
            self.description.setText(st.entry.description
                                     + (f" ({st.entry.note})" if st.entry.note else ""))

    # -- downloading

    @property
    def downloading(self) -> bool:
        return self.thread is not None

    def start_download(self, name: str | None = None, *, restart_when_done: bool = False) -> bool:
        """Download the selected (or named) model on a worker thread. False, with the
        reason in the status line, when it is installed or a download is running.
        `restart_when_done`: restart the engines at the end without asking (the offer
        of a first model, first_minute.py)."""
        if self.thread is not None:
            self.status.setText("a download is already running")
            return False
        if name is not None and not self.select(name):
            self.status.setText(f"no model named {name!r} in the catalogue")
            return False
        st = self.selected_status()
        if st is None or st.installed:
            self.status.setText("choose a model that is not installed yet")
            return False
        entry, directory, options = st.entry, self.directory, dict(self.download_options)

        def job(entry: ModelEntry, progress) -> Path:
            return self.download_fn(entry, directory, progress=progress, **options)
        self.thread = DownloadThread(entry, job)
        self.restart_when_done = restart_when_done
        self.thread.progressed.connect(self._on_progress, _QUEUED)
        self.thread.finished.connect(self._on_thread_finished, _QUEUED)
        self._show_progress(entry, st.partial_bytes)
        self.status.setText(f"downloading {entry.name} to {st.path}…")
        self.thread.start()
        self._update_buttons()
        return True

    def _show_progress(self, entry: ModelEntry, done: int) -> None:
        if self.progress is not None:
            self.progress.deleteLater()
        progress = QProgressDialog(f"Downloading {entry.name}…", "Cancel", 0, PROGRESS_STEPS,
                                   self)
        progress.setWindowTitle("Download")
        # Not modal: a modal QProgressDialog processes events inside setValue, and the
        # download's end would then be handled in the middle of a progress update. The
        # buttons that could interfere are disabled while a download runs.
        progress.setMinimumDuration(0)
        progress.setAutoReset(False)    # it stays at 100 % until the result is handled
        progress.setAutoClose(False)
        progress.canceled.connect(self.cancel_download)
        self.progress = progress
        self._on_progress(done, entry.size)
        progress.show()

    def _on_progress(self, done: int, total: int | None) -> None:
        # After Cancel the dialog is reset and hidden; an update would show it again.
        if self.progress is None or self.thread is None or self.thread.cancel_requested:
            return
        progress, name = self.progress, self.thread.entry.name
        if total:
            progress.setLabelText(f"Downloading {name}\n{_mb(done)} of {_mb(total)} MB "
                                  f"({min(done, total) * 100 // total} %)")
            progress.setRange(0, PROGRESS_STEPS)
            progress.setValue(min(PROGRESS_STEPS, done * PROGRESS_STEPS // total))
        else:                           # size unknown: a busy bar and the bytes so far
            progress.setLabelText(f"Downloading {name}\n{_mb(done)} MB")
            progress.setRange(0, 0)

    def cancel_download(self) -> None:
        """Stop the running download at its next chunk; the .part is kept for a resume."""
        if self.thread is None:
            return
        self.thread.cancel()
        self.status.setText(f"stopping the download of {self.thread.entry.name}…")

    def _on_thread_finished(self) -> None:
        thread, self.thread = self.thread, None
        if thread is None:
            return
        thread.wait()
        if self.progress is not None:
            self.progress.hide()        # hide, not close: closing emits `canceled`
        self.refresh()
        entry = thread.entry
        if thread.path is not None:
            self._installed(entry, thread.path)
        elif thread.error is not None:
            self.status.setText(thread.error)
            QMessageBox.warning(self, "Download failed", thread.error)
        else:
            part = partial_path(self.directory / entry.filename)
            kept = part.stat().st_size if part.is_file() else 0
            self.status.setText(f"download of {entry.name} cancelled"
                                + (f"; {_mb(kept)} MB kept in {part.name}, Resume download "
                                   "continues from there" if kept else ""))

    def _installed(self, entry: ModelEntry, path: Path) -> None:
        self.status.setText(f"{entry.name} installed: {path}")
        self.download_finished.emit(entry.name, str(path))
        if self.reload_engines is None:
            self.status.setText(f"{entry.name} installed: {path}; restart the program with "
                                "`annotator gui` to use it")
            return
        if self.restart_when_done:
            self.restart_when_done = False
            self.restart_engines()
            return
        answer = QMessageBox.question(
            self, "Model installed", f"{entry.name} is installed.\n\nRestart the engines now "
            "so that it is used? The current prompt is cleared.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.Yes)
        if answer == QMessageBox.StandardButton.Yes:
            self.restart_engines()

    def restart_engines(self) -> bool:
        if self.reload_engines is None or self.thread is not None:
            return False
        ok = bool(self.reload_engines())
        self.status.setText("engines restarted: new models are in use" if ok else
                            "the engines could not be restarted (see the status bar)")
        self.refresh()
        return ok

    def shutdown(self, wait_ms: int = 3000) -> None:
        """Cancel a running download and wait a little for it (the window is closing)."""
        thread = self.thread
        if thread is None:
            return
        thread.cancel()
        if not thread.wait(wait_ms):
            # Still blocked in a network read (at most the download's timeout): keep the
            # QThread referenced, since destroying a running QThread aborts the program.
            _ORPHANS.add(thread)
        self.thread = None
        if self.progress is not None:
            self.progress.hide()


def model_dialog_of(window) -> ModelDialog:
    """The window's model picker (made on first use, not shown)."""
    dialog = getattr(window, "model_dialog", None)
    if dialog is None:
        reload = window.reload_engines if window.session_factory is not None else None
        dialog = ModelDialog(window, directory=window.models_dir, reload_engines=reload,
                             apply_choice=window.apply_model_choice,
                             list_plugins=getattr(window.session_factory, "list_plugins", None))
        window.model_dialog = dialog
    return dialog


def show_model_dialog(window) -> ModelDialog:
    """File ▸ Models…: one picker per window, refreshed each time it opens. It is modal
    to the window but not blocking (`open`, not `exec`), so a download keeps the GUI live."""
    from annotator.ui.settings import read_model_choice
    dialog = model_dialog_of(window)
    dialog.set_current_engine(window.engine_label.text().partition(": ")[2])
    if dialog.thread is None:
        dialog.choices.set_choice(read_model_choice(window.settings))
    dialog.refresh()
    dialog.open()
    return dialog
