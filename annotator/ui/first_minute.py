"""The first minute on the fallback engine: when the first click is answered by the
classic engine (no SAM installed), a one-time notice above the canvas says so and offers
the catalogue's smallest SAM (SAM 2.1 Hiera-T, with its size) right there. Download uses
the model picker's machinery (progress window with Cancel, model_dialog.py) and restarts
the engines when done, so the next click is SAM's. Dismissing it is remembered."""
from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QLabel, QPushButton, QToolBar

from engines.files import CatalogueError, get_entry, is_installed

from annotator.ui.settings import read_bool

OFFER = "sam2.1-hiera-t"                  # the catalogue's smallest SAM
DISMISSED_KEY = "notices/classic_offer_dismissed"
FALLBACK = "classic"


class ClassicOffer(QObject):
    def __init__(self, window):
        super().__init__(window)
        self.w = window
        self.bar: QToolBar | None = None
        self.label: QLabel | None = None
        self.download_button: QPushButton | None = None
        self.shown = False                # at most once per window
        self._listening = False
        window.classic_offer = self
        window.labeler.answered.connect(self._answered)

    def _entry(self):
        try:
            return get_entry(OFFER)
        except CatalogueError:
            return None

    def _answered(self, engine: str, _explain: str, _ms: float) -> None:
        if engine != FALLBACK or self.shown or read_bool(self.w.settings, DISMISSED_KEY, False):
            return
        entry = self._entry()
        if entry is None or is_installed(entry, self.w.models_dir):
            return
        self.show(entry)

    def show(self, entry) -> None:
        self.shown = True
        size = f" ({entry.size_mb:.0f} MB)" if entry.size_mb else ""
        bar = QToolBar("Notice", self.w)
        bar.setObjectName("notice-classic")
        bar.setMovable(False)
        name = entry.description.split(" (")[0]           # "SAM 2.1 Hiera-Tiny"
        self.label = QLabel(f"  Answered by the classic fallback (GrabCut), not by SAM: "
                            f"masks will be rough. {name}{size} is the smallest SAM.  ", bar)
        self.label.setToolTip(entry.description)
        self.download_button = QPushButton(f"Download {OFFER}{size}", bar)
        self.download_button.clicked.connect(lambda: self.download(entry))
        dismiss = QPushButton("Dismiss", bar)
        dismiss.setToolTip("do not show this notice again (File ▸ Models… stays available)")
        dismiss.clicked.connect(self.dismiss)
        for widget in (self.label, self.download_button, dismiss):
            bar.addWidget(widget)
        self.w.addToolBarBreak()
        self.w.addToolBar(bar)
        self.bar = bar

    @property
    def visible(self) -> bool:
        return self.bar is not None and self.bar.isVisible()

    def download(self, entry) -> bool:
        from annotator.ui.model_dialog import model_dialog_of
        dialog = model_dialog_of(self.w)
        if not self._listening:
            dialog.download_finished.connect(self._installed)
            self._listening = True
        if not dialog.start_download(entry.name, restart_when_done=True):
            self.label.setText(f"  {dialog.status.text()}  ")
            return False
        self.download_button.setEnabled(False)
        self.label.setText(f"  Downloading {entry.name}… (progress window; Cancel stops it, "
                           "and Download resumes later)  ")
        dialog.thread.finished.connect(self._ended)
        return True

    def _ended(self) -> None:
        if self.bar is not None and self.download_button is not None:
            self.download_button.setEnabled(True)     # cancelled or failed: try again

    def _installed(self, name: str, _path: str) -> None:
        if name == OFFER:
            self.close()
            self.w.statusBar().showMessage(f"{name} installed: the engines now use it", 6000)

    def dismiss(self) -> None:
        self.w.settings.setValue(DISMISSED_KEY, True)
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.hide()
            self.w.removeToolBar(self.bar)
            self.bar.deleteLater()
            self.bar = None
