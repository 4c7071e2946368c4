"""The prompt being built on the current image: clicks, a box, the engine's last answer.

No widgets here: the canvas turns gestures into `add_point` / `set_box`, the labelling
controller turns this state into an `engines.types.Prompt` (numpy only, no torch) and
keeps the answer that belongs to the newest request.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable

import numpy as np

from engines.types import Prediction, Prompt

POSITIVE, NEGATIVE = 1, 0


@dataclass
class PromptState:
    image_id: Hashable | None = None
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    text: str | None = None
    pending: int | None = None            # request id whose answer we wait for
    prediction: Prediction | None = None  # the answer shown as the preview
    engine_name: str = ""
    candidate: int = 0                    # which of prediction.masks is shown
    feed_logits: bool = True              # give the previous answer to the next click
    # Ctrl+Z / Ctrl+Shift+Z inside the prompt: (step kind, the state before / after it)
    undo_steps: list[tuple[str, tuple]] = field(default_factory=list, repr=False)
    redo_steps: list[tuple[str, tuple]] = field(default_factory=list, repr=False)

    # -- building

    def reset(self, image_id: Hashable | None = None) -> None:
        """Forget everything (Esc, or another image)."""
        self.__init__(image_id=image_id, feed_logits=self.feed_logits)

    @property
    def is_empty(self) -> bool:
        return not self.points and self.box is None and not self.text

    def add_point(self, x: float, y: float, label: int) -> None:
        if label not in (POSITIVE, NEGATIVE):
            raise ValueError(f"a point label is 1 (object) or 0 (background), not {label!r}")
        self._step("point")
        self.text = None
        self.points.append((float(x), float(y)))
        self.labels.append(int(label))

    def set_box(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """A new box replaces the old one; the previous answer is no longer a good prior."""
        self._step("box")
        self.text = None
        self.box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        self.prediction = None
        self.candidate = 0

    def set_text(self, text: str) -> None:
        self.reset(self.image_id)
        self.text = text.strip() or None

    # -- taking steps back (the prompt's own history, before the image's)

    def _state(self) -> tuple:
        return (list(self.points), list(self.labels), self.box, self.prediction,
                self.engine_name, self.candidate, self.pending is None)

    def _restore(self, state: tuple) -> bool:
        """Put a saved state back; True when its answer had arrived (nothing to ask)."""
        (self.points, self.labels, self.box, self.prediction, self.engine_name,
         self.candidate, settled) = list(state[0]), list(state[1]), *state[2:]
        self.pending = None      # an answer still on its way is for another prompt now
        self.text = None
        return settled

    def _step(self, kind: str) -> None:
        self.undo_steps.append((kind, self._state()))
        self.redo_steps.clear()

    @property
    def undo_kind(self) -> str | None:
        """"point" or "box": what undo_step would take back (None: nothing)."""
        return self.undo_steps[-1][0] if self.undo_steps else None

    @property
    def redo_kind(self) -> str | None:
        return self.redo_steps[-1][0] if self.redo_steps else None

    def undo_step(self) -> tuple[str, bool] | None:
        """Take back the last point or box: (its kind, whether the preview shown now is
        already the answer to what is left). The answer shown before the step comes back
        with it, so no engine call is needed unless it was still on its way."""
        if not self.undo_steps:
            return None
        kind, before = self.undo_steps.pop()
        self.redo_steps.append((kind, self._state()))
        return kind, self._restore(before)

    def redo_step(self) -> tuple[str, bool] | None:
        """Put the last taken-back point or box again (same answer as undo_step)."""
        if not self.redo_steps:
            return None
        kind, after = self.redo_steps.pop()
        self.undo_steps.append((kind, self._state()))
        return kind, self._restore(after)

    def to_prompt(self) -> Prompt:
        """The engine prompt for the current clicks/box, with the shown candidate's
        low-res logits as the prior (the refinement loop SAM was trained with)."""
        if self.text:
            return Prompt(text=self.text)
        points = labels = None
        if self.points:
            points = np.asarray(self.points, dtype=np.float32).reshape(-1, 2)
            labels = np.asarray(self.labels, dtype=np.int32)
        box = None if self.box is None else np.asarray(self.box, dtype=np.float32)
        logits = None
        pred = self.prediction
        if self.feed_logits and pred is not None and pred.low_res_logits is not None \
                and len(pred.low_res_logits) > self.candidate:
            logits = np.asarray(pred.low_res_logits[self.candidate:self.candidate + 1])
        return Prompt(points=points, labels=labels, box=box, mask_logits=logits)

    # -- answers

    def accept_answer(self, prediction: Prediction, engine_name: str) -> None:
        self.prediction, self.engine_name, self.candidate = prediction, engine_name, 0
        self.pending = None

    def cycle_candidate(self) -> bool:
        """Show the next mask of a multi-mask answer; False when there is only one."""
        if self.prediction is None or len(self.prediction.masks) < 2:
            return False
        self.candidate = (self.candidate + 1) % len(self.prediction.masks)
        return True

    @property
    def mask(self) -> np.ndarray | None:
        if self.prediction is None:
            return None
        return self.prediction.masks[self.candidate]

    @property
    def score(self) -> float | None:
        if self.prediction is None or self.prediction.scores is None \
                or len(self.prediction.scores) <= self.candidate:
            return None
        return float(self.prediction.scores[self.candidate])

    def log(self) -> list[dict[str, Any]]:
        """The prompts as stored with the accepted annotation (JSON-able): what the user
        really did, kept for fine-tuning on casual prompts."""
        out: list[dict[str, Any]] = []
        if self.text:
            out.append({"type": "text", "text": self.text})
        if self.box is not None:
            out.append({"type": "box", "box": [round(v, 2) for v in self.box]})
        for (x, y), label in zip(self.points, self.labels):
            out.append({"type": "point", "x": round(x, 2), "y": round(y, 2), "label": label})
        if out and self.prediction is not None:
            out.append({"type": "answer", "engine": self.engine_name,
                        "candidate": self.candidate,
                        "candidates": int(len(self.prediction.masks))})
        return out
