"""The interactive loop on the current image: gestures -> prompts -> engine service ->
preview. Nothing here runs a model; answers arrive as events through the bridge.

An answer is shown only if it is for the image on the canvas and for the newest request
(the service already drops most stale work; this is the GUI's own guard, because an event
may have been queued just before the user moved on).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Hashable

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor

from annotator.ui.canvas import Canvas
from annotator.ui.tools import PromptState

log = logging.getLogger(__name__)


class Labeler(QObject):
    status = Signal(str)                       # a message for the status bar
    answered = Signal(str, str, float)         # engine name, explanation, ms
    embedding_state = Signal(object, str, str)  # image id, state, detail (error or source/ms)
    preview_shown = Signal(object, object)     # (answer's image id, canvas image id)
    prompt_changed = Signal()

    def __init__(self, session: Any, canvas: Canvas, parent: QObject | None = None):
        super().__init__(parent)
        self.session = session
        self.canvas = canvas
        self.prompt = PromptState()
        self.image_id: Hashable | None = None
        self.preview_color = QColor(255, 255, 0)
        self.stale_dropped = 0     # answers that arrived for an old image or request
        canvas.point_clicked.connect(self.add_point)
        canvas.box_drawn.connect(self.set_box)

    @property
    def service(self):
        return None if self.session is None else self.session.service

    # -- the current image

    def open_image(self, image_id: Hashable, path: str | Path) -> None:
        """The canvas now shows `image_id`: forget the old prompt, embed this one."""
        self.image_id = image_id
        self.prompt.reset(image_id)
        self._redraw()
        if self.service is not None:
            self.service.set_image(image_id, str(path))

    def close_image(self) -> None:
        self.image_id = None
        self.prompt.reset(None)
        self._redraw()

    def prefetch(self, items: list[tuple[Hashable, str]]) -> None:
        if self.service is not None:
            self.service.prefetch(items)

    # -- gestures

    def add_point(self, x: float, y: float, label: int) -> None:
        if self.image_id is None:
            return
        self.prompt.add_point(x, y, label)
        self._send()

    def set_box(self, x0: float, y0: float, x1: float, y1: float) -> None:
        if self.image_id is None:
            return
        self.prompt.set_box(x0, y0, x1, y1)
        self._send()

    def ask_text(self, text: str) -> None:
        if self.image_id is None or not text.strip():
            return
        self.prompt.set_text(text)
        self._send()

    def clear(self) -> None:
        """Esc: forget the prompt and the preview (a pending answer will be ignored)."""
        self.prompt.reset(self.image_id)
        self._redraw()

    def undo_step(self) -> str | None:
        """Ctrl+Z while prompting: drop the last point (or the box); None when the
        prompt has no step to take back."""
        return self._step_back(self.prompt.undo_step())

    def redo_step(self) -> str | None:
        """Ctrl+Shift+Z: put the point (or box) back."""
        return self._step_back(self.prompt.redo_step())

    def _step_back(self, done: tuple[str, bool] | None) -> str | None:
        if done is None:
            return None
        kind, settled = done
        if settled or self.prompt.is_empty:
            self._redraw()
        else:
            self._send()                 # its answer had not arrived: ask again
        return kind

    def cycle_candidate(self) -> bool:
        if self.prompt.cycle_candidate():
            self._redraw()
            self.status.emit(f"candidate {self.prompt.candidate + 1} of "
                             f"{len(self.prompt.prediction.masks)}"
                             + (f", score {self.prompt.score:.2f}" if self.prompt.score is not None
                                else ""))
            return True
        return False

    def set_preview_color(self, color: QColor) -> None:
        self.preview_color = QColor(color)
        self._redraw(marks=False)

    def _send(self) -> None:
        self._redraw()
        if self.service is None:
            self.status.emit("no engine is running: start the program with `annotator gui`")
            return
        try:
            self.prompt.pending = self.service.predict(self.image_id, self.prompt.to_prompt())
        except (RuntimeError, TypeError, ValueError) as exc:
            self.status.emit(f"cannot ask the engine: {exc}")

    # -- engine events (GUI thread, through the bridge)

    def on_event(self, event: Any) -> None:
        kind = getattr(event, "kind", "")
        if kind == "embedding":
            detail = event.error or (f"{event.source}, {event.ms:.0f} ms" if event.state == "ready"
                                     else "")
            self.embedding_state.emit(event.image_id, event.state, detail)
            if event.image_id == self.image_id and not event.background:
                if event.state == "embedding":
                    self.status.emit(f"embedding the image with {event.engine_name}…")
                elif event.state == "ready":
                    self.status.emit(f"image ready ({event.engine_name}, {detail})")
                elif event.state == "failed":
                    self.status.emit(f"this image cannot be used by the engine: {event.error}")
            return
        if kind == "encoder_runtime":           # a faster encoder being built in the background
            self.status.emit(event.message)
            return
        current = event.image_id == self.image_id and \
            getattr(event, "request_id", None) == self.prompt.pending
        if kind == "prediction":
            if not current:
                self.stale_dropped += 1
                return
            self.prompt.accept_answer(event.prediction, event.engine_name)
            self._redraw()
            self.preview_shown.emit(event.image_id, self.image_id)
            self.answered.emit(event.engine_name, event.explain, float(event.ms))
            n = len(event.prediction.masks)
            more = f"; Tab: {n} candidates" if n > 1 else ""
            note = (event.prediction.extras or {}).get("note")
            if note:                       # the engine says it could not do better
                self.status.emit(f"{event.engine_name}: {note}")
            elif not self.prompt.mask.any():
                self.status.emit(f"{event.engine_name}: {event.ms:.0f} ms — found no object "
                                 f"here; add a point, redraw the box or Esc{more}")
            else:
                self.status.emit(f"{event.engine_name}: {event.ms:.0f} ms — Enter accepts, "
                                 f"Esc clears{more}")
        elif kind == "prediction_failed":
            if current:
                self.prompt.pending = None
                self.status.emit(event.message)
        elif kind == "dropped":
            if current:
                self.prompt.pending = None

    # -- drawing

    def _redraw(self, marks: bool = True) -> None:
        p = self.prompt
        self.canvas.set_preview(p.mask, self.preview_color)
        if marks:
            self.canvas.set_prompt_marks(p.points, p.labels, p.box)
        self.prompt_changed.emit()
