"""File ▸ Auto-label images…: `annotator autolabel` from the window.

The same options as the command (engine, text classes, only unannotated, threshold,
minimum area, images glob) and the same `AutolabelJob`: it plans on the GUI thread,
proposes image by image on a worker thread (which never touches the project), and each
result comes back through a queued signal to be stored on the GUI thread (the project's
sqlite connection belongs to it). Cancel stops between images and, through the cancel
callback, inside a proposer. Candidates are written, never annotations; a re-run skips
the images already done with the same settings.
"""
from __future__ import annotations

import threading
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout,
                               QLabel, QLineEdit, QPlainTextEdit, QProgressBar, QPushButton,
                               QVBoxLayout)

from annotator.core.automation.autolabel import AutolabelJob, AutolabelOptions, parse_classes
from annotator.core.automation.candidates import CandidateOptions
from annotator.core.errors import CoreError, InputError
from engines.manifest import list_engines
from engines.types import EngineError

AUTOMATIC = "automatic"


class _Relay(QObject):
    """Worker thread -> GUI thread (queued: the receiver lives on the GUI thread)."""
    result = Signal(object, object)       # item, result
    done = Signal()


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"about {seconds} s left"
    return f"about {seconds // 60} min {seconds % 60:02d} s left"


class AutolabelDialog(QDialog):
    def __init__(self, window: Any):
        super().__init__(window)
        self.w = window
        self.setWindowTitle("Auto-label images")
        self.job: AutolabelJob | None = None
        self.summary = None
        self._thread: threading.Thread | None = None
        self._cancel = threading.Event()
        self._relay = _Relay(self)
        self._relay.result.connect(self._stored, Qt.ConnectionType.QueuedConnection)
        self._relay.done.connect(self._finished, Qt.ConnectionType.QueuedConnection)

        self.engine = QComboBox(self)
        self.engine.addItems([AUTOMATIC] + [e.name for e in list_engines(task="auto")])
        self.engine.setToolTip("automatic: the installed proposer the router picks")
        self.text = QLineEdit(self)
        self.text.setPlaceholderText("empty: every object (auto); or class names: cat, dog")
        self.only_unannotated = QCheckBox("only images with no annotation", self)
        self.threshold = QLineEdit("0.0", self)
        self.threshold.setToolTip("keep proposals scoring at least this (0 to 1)")
        self.min_area = QLineEdit("0", self)
        self.min_area.setToolTip("drop proposals smaller than this many pixels")
        self.images = QLineEdit(self)
        self.images.setPlaceholderText("all images; or a glob such as *.jpg")
        form = QFormLayout()
        form.addRow("Engine", self.engine)
        form.addRow("Text classes", self.text)
        form.addRow("", self.only_unannotated)
        form.addRow("Score threshold", self.threshold)
        form.addRow("Minimum area (px)", self.min_area)
        form.addRow("Images", self.images)

        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.state = QLabel("Candidates are written for review, never annotations.", self)
        self.state.setWordWrap(True)
        self.report = QPlainTextEdit(self)
        self.report.setReadOnly(True)
        self.report.setMinimumHeight(110)
        self.report.setPlaceholderText("the summary appears here when the run ends")
        self.start_button = QPushButton("Start", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.addButton(self.start_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.close)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.state)
        layout.addWidget(self.report)
        layout.addWidget(buttons)
        self.resize(560, 460)

    @property
    def running(self) -> bool:
        return self._thread is not None

    # -- starting

    def options(self) -> AutolabelOptions:
        """The options as typed; InputError (a CoreError) says what is wrong."""
        try:
            threshold = float(self.threshold.text().strip() or "0")
        except ValueError:
            raise InputError(f"threshold {self.threshold.text()!r} is not a number") from None
        text = self.min_area.text().strip() or "0"
        try:
            min_area = int(text)
        except ValueError:
            raise InputError(f"minimum area {text!r} is not a whole number of pixels") from None
        engine = self.engine.currentText()
        classes = parse_classes(self.text.text()) if self.text.text().strip() else ()
        return AutolabelOptions(
            engine=None if engine == AUTOMATIC else engine, classes=classes,
            only_unannotated=self.only_unannotated.isChecked(),
            images=self.images.text().strip() or None,
            candidate=CandidateOptions(threshold=threshold, min_area=min_area)).checked()

    def start(self) -> bool:
        if self.running:
            return False
        if self.w.session is None:
            return self._refuse("no engine running: start the program with `annotator gui`")
        try:
            options = self.options()
            proposer = self.w.session.batch_proposer(options.task, options.engine,
                                                     options.classes)
            self.job = AutolabelJob(proposer, options)
            todo = self.job.plan(self.w.project)
        except (CoreError, EngineError) as exc:
            return self._refuse(str(exc))
        self.summary = None
        self.report.clear()
        self._cancel.clear()
        self.progress.setRange(0, max(1, len(todo)))
        self.progress.setValue(0)
        self.state.setText(f"{proposer.name}: {len(todo)} image(s) to label…")
        self._set_running(True)
        self._thread = threading.Thread(target=self._work, args=(self.job, todo),
                                        name="autolabel", daemon=True)
        self._thread.start()
        return True

    def _refuse(self, message: str) -> bool:
        self.state.setText(f"not started: {message}")
        return False

    def _set_running(self, on: bool) -> None:
        self.start_button.setEnabled(not on)
        self.cancel_button.setEnabled(on)
        for field in (self.engine, self.text, self.only_unannotated, self.threshold,
                      self.min_area, self.images):
            field.setEnabled(not on)

    # -- the worker thread: proposes only

    def _work(self, job: AutolabelJob, todo: list) -> None:
        try:
            for item in todo:
                if self._cancel.is_set():
                    break
                result = job.propose(item, self._cancel.is_set)
                self._relay.result.emit(item, result)
                if result[0] == "cancelled":
                    break
        finally:
            self._relay.done.emit()

    # -- back on the GUI thread

    def _stored(self, item, result) -> None:
        if self.job is None:
            return
        try:
            info = self.job.store(self.w.project, item, result)
        except CoreError as exc:           # e.g. the project went read-only: say it, go on
            self.job.summary.failed.append((item[1], f"not stored: {exc}"))
            return
        if info is not None:
            self.progress.setValue(info.done)
            self.state.setText(f"{info.done} / {info.total} image(s), last {info.file_name}; "
                               f"{eta_text(info.eta_s)}")

    def _finished(self) -> None:
        if self._thread is not None:
            self._thread.join()
        self._thread = None
        if self.job is None:
            return
        if self._cancel.is_set():
            self.job.summary.cancelled = True
        self.summary = self.job.finish()
        self.report.setPlainText("\n".join(self.summary.lines()))
        self.state.setText("cancelled" if self.summary.cancelled else "done")
        self.progress.setValue(self.progress.maximum() if not self.summary.cancelled
                               else self.progress.value())
        self._set_running(False)
        self.w.statusBar().showMessage(self.summary.lines()[0])

    # -- stopping

    def cancel(self) -> None:
        if self.running:
            self._cancel.set()
            self.state.setText("cancelling…")

    def shutdown(self, timeout: float = 30.0) -> None:
        """Cancel and wait for the worker (the window is closing)."""
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.job = None

    def closeEvent(self, event) -> None:
        if self.running:
            self.cancel()        # the last results are still stored as they come in
            event.ignore()
            return
        super().closeEvent(event)


def show_autolabel_dialog(window) -> AutolabelDialog:
    if getattr(window, "autolabel_dialog", None) is None:
        window.autolabel_dialog = AutolabelDialog(window)
    dialog = window.autolabel_dialog
    dialog.show()
    dialog.raise_()
    return dialog
