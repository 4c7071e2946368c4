"""The review queue in the window: Auto (and text) proposals become stored candidates,
drawn by the canvas's CandidateLayer; a person selects, edits, accepts or rejects them.

Every change is a command on the window's CommandStack (undoable); the store's events
bring the drawing up to date (`refresh`). Proposal answers arrive as service events on
the GUI thread (through the EventBridge) and are stored with `runs.store_proposals`, so
a crash right after loses nothing. Only candidates scoring at least the threshold (the
toolbar slider, kept in QSettings) are shown, clickable and taken by "all shown".
Beside Auto, a small choice of what it looks for (the manifest's Auto presets: salient
objects, camouflaged / medical, everything; kept in QSettings): the router tries that
preset's engines first; an entry none of whose engines is installed is disabled, and its
tooltip says what to install.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSlider, QWidget

from annotator.core.automation import review as rv
from annotator.core.automation.autolabel import parse_classes
from annotator.core.automation.candidates import CandidateOptions
from annotator.core.automation.runs import RunSettings, new_run_id, store_proposals
from annotator.core.errors import CoreError
from annotator.ui.candidate_layer import Entry, ShapeCache
from annotator.ui.targets import Target, candidate
from engines.manifest import AUTO_PRESETS

THRESHOLD_KEY = "review/threshold"
PRESET_KEY = "review/auto_preset"
DEFAULT_PRESET = "salient"


class ThresholdSlider(QWidget):
    """0..1 in steps of 0.01: candidates scoring below it are hidden."""
    changed = Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setRange(0, 100)
        self.slider.setMaximumWidth(110)
        self.slider.setToolTip("hide proposed objects the model is less sure of than this "
                              "(0: show all); Shift+Enter accepts the shown ones")
        self.label = QLabel("score ≥ 0.00", self)
        self.label.setMinimumWidth(80)
        row = QHBoxLayout(self)
        row.setContentsMargins(4, 0, 4, 0)
        row.addWidget(self.slider)
        row.addWidget(self.label)
        self.slider.valueChanged.connect(self._moved)

    @property
    def value(self) -> float:
        return self.slider.value() / 100.0

    def set_value(self, value: float) -> None:
        self.slider.setValue(round(min(max(float(value), 0.0), 1.0) * 100))
        self._show()

    def _moved(self, _v: int) -> None:
        self._show()
        self.changed.emit(self.value)

    def _show(self) -> None:
        self.label.setText(f"score ≥ {self.value:.2f}")


class PresetChoice(QComboBox):
    """What Auto looks for: one entry an Auto preset (engines/manifest.py)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for name, label in AUTO_PRESETS.items():
            self.addItem(label.removeprefix("Auto: "), name)
        self.setToolTip("what Auto (G) looks for")

    @property
    def preset(self) -> str:
        return str(self.currentData())

    def set_preset(self, name: str) -> None:
        index = self.findData(name)
        self.setCurrentIndex(index if index >= 0 else self.findData(DEFAULT_PRESET))

    def set_problems(self, problems: dict[str, str | None]) -> None:
        """Disable the entries whose engines are missing; their tooltip says why."""
        model = self.model()
        for i in range(self.count()):
            name = self.itemData(i)
            problem = problems.get(name)
            model.item(i).setEnabled(problem is None)
            self.setItemData(i, f"not installed: {problem}" if problem else
                             f"{AUTO_PRESETS[name]}: its engines first, then any other proposer",
                             Qt.ItemDataRole.ToolTipRole)


class Review(QObject):
    """The window's review controller (`w` is the MainWindow)."""
    status = Signal(str)
    selected_changed = Signal(object)     # candidate id or None (the hint strip follows)

    def __init__(self, window: Any):
        super().__init__(window)
        self.w = window
        self.selected: int | None = None           # the selected candidate's id
        self.slider = ThresholdSlider(window)
        self._shapes = ShapeCache(window.crops)
        self._records: dict[int, Any] = {}          # id -> pending CandidateRecord (this image)
        # image id -> (the proposal request asked, its class names)
        self._requests: dict[Any, tuple[int, tuple[str, ...]]] = {}
        try:
            saved = float(window.settings.value(THRESHOLD_KEY, 0.0))
        except (TypeError, ValueError):
            saved = 0.0
        self.slider.set_value(saved)
        self.slider.changed.connect(self._threshold_changed)
        self.presets = PresetChoice(window)
        self.presets.set_preset(str(window.settings.value(PRESET_KEY, DEFAULT_PRESET)))
        self.presets.currentIndexChanged.connect(self._preset_changed)

    @property
    def threshold(self) -> float:
        return self.slider.value

    # -- asking the engine

    def problem(self, task: str) -> str | None:
        session = self.w.session
        return session.problem(task) if session is not None else \
            "no engine running: start the program with `annotator gui`"

    def update_auto(self) -> None:
        """Auto is enabled only when a proposer is installed (the tooltip says what to
        install otherwise); so is each preset entry."""
        problem = self.problem("auto")
        self.w.auto_button.setEnabled(problem is None)
        self.presets.setEnabled(problem is None)
        session = self.w.session
        check = getattr(session, "preset_problem", None)
        self.presets.set_problems({name: (check(name) if callable(check) else problem)
                                   for name in AUTO_PRESETS})
        self._auto_tooltip(problem)

    def _auto_tooltip(self, problem: str | None = None) -> None:
        self.w.auto_button.setToolTip(
            f"Auto is off: {problem}" if problem else
            f"propose objects as candidates (G): {AUTO_PRESETS[self.presets.preset].lower()}")

    def _preset_changed(self, _index: int) -> None:
        self.w.settings.setValue(PRESET_KEY, self.presets.preset)
        if self.w.auto_button.isEnabled():
            self._auto_tooltip()

    def auto(self) -> None:
        self._ask("auto", preset=self.presets.preset)

    def text(self, text: str) -> None:
        try:
            classes = parse_classes(text)
        except CoreError:
            self.status.emit("type one or more class names, separated by commas")
            return
        self._ask("text", classes)

    def _ask(self, task: str, classes: tuple[str, ...] = (), preset: str | None = None) -> None:
        problem = self.problem(task)
        if problem:
            self.status.emit(problem)
            return
        image_id = self.w.image_id
        if image_id is None:
            self.status.emit("no image is open")
            return
        try:
            request = self.w.session.service.propose(image_id, task,
                                                     classes=list(classes) or None,
                                                     preset=preset)
        except (CoreError, RuntimeError, TypeError, ValueError) as exc:
            self.status.emit(f"cannot ask the engine: {exc}")
            return
        self._requests[image_id] = (request, classes)
        what = ", ".join(classes) if classes else \
            AUTO_PRESETS[preset].removeprefix("Auto: ") if preset else "every object"
        self.status.emit(f"proposing {what}…")

    def on_event(self, event: Any) -> None:
        """Service events (GUI thread): store the answers to the requests made here."""
        kind = getattr(event, "kind", "")
        if kind not in ("proposals", "proposals_failed", "dropped"):
            return
        asked = self._requests.get(event.image_id)
        if asked is None or asked[0] != event.request_id:
            return                                   # not ours, or superseded
        del self._requests[event.image_id]
        if kind == "proposals_failed":
            self.status.emit(f"proposals failed: {event.message}")
        elif kind == "dropped":
            self.status.emit(f"proposals dropped: {event.reason}")
        else:
            self._store(event, asked[1])

    def _store(self, event: Any, classes: tuple[str, ...]) -> None:
        settings = RunSettings(event.task, event.engine_name, event.model, {}, classes,
                               CandidateOptions())
        try:
            conv = store_proposals(self.w.project, event.image_id, event.proposals, settings,
                                   new_run_id())
        except CoreError as exc:
            self.status.emit(f"proposals not stored: {exc}")
            return
        self.w.engine_label.setText(f"engine: {event.engine_name}")
        self.w.engine_label.setToolTip(event.explain)
        self.w.latency_label.setText(f"latency: {event.ms:.0f} ms")
        where = "" if event.image_id == self.w.image_id else \
            f" on {self.w.project.image(event.image_id).file_name}"
        note = (event.proposals.extras or {}).get("note")
        if note and not conv.candidates:       # the engine says why it has nothing to offer
            self.status.emit(f"{event.engine_name}: no candidates{where}: {note}")
            self.w._flush()
            return
        self.status.emit(f"{event.engine_name}: {len(conv.candidates)} candidate(s) added{where}"
                         f", {conv.duplicates} dropped as duplicates ({event.ms:.0f} ms) — "
                         "click one, Enter accepts, Delete rejects, Shift+Enter accepts all")
        self.w._flush()

    # -- drawing and selection

    def refresh(self) -> None:
        """Draw the current image's pending candidates again (after any store change)."""
        image_id = self.w.image_id
        recs = self.w.project.candidates(image_id) if image_id is not None else []
        self._records = {c.id: c for c in recs}
        shapes = self._shapes.shapes(recs)
        entries = [Entry(c.id, c.score, shapes[c.id], self._label(c)) for c in recs
                   if c.id in shapes]
        if self.selected not in self._records:
            self.selected = None
        self.w.canvas.set_candidates(entries, self.selected)
        self.w.canvas.set_candidate_threshold(self.threshold)

    @staticmethod
    def _label(c) -> str:
        return f"{c.score:.2f} {c.label}".strip() + (" ✎" if c.edited else "")

    def shown_ids(self) -> list[int]:
        layer = self.w.canvas.candidates
        return [e.id for e in layer.shown()] if layer is not None else []

    def select(self, cand_id: int | None) -> None:
        """Select a candidate (or none); the instance selection is cleared, so the vertex
        editor and the brush have one target."""
        self.selected = cand_id
        self.selected_changed.emit(cand_id)
        if cand_id is not None and self.w.instances.selected_ids:
            self.w.instances.select([])          # its signal redraws the instances
        layer = self.w.canvas.candidates
        if layer is not None:
            layer.set_entries(layer.entries, cand_id)
        if self.w.image_id is not None:      # the editor: this candidate, or the instance
            self.w._show_polygon(None, set(self.w.instances.selected_ids))
        if cand_id is not None and cand_id in self._records:
            c = self._records[cand_id]
            self.status.emit(f"candidate {c.score:.2f} {c.label} ({c.engine}): Enter accepts, "
                             "Delete rejects, drag its vertices or B / E to edit")

    def show_polygon(self) -> bool:
        """Give the vertex editor the selected candidate; False when none is selected."""
        rec = self._records.get(self.selected) if self.selected is not None else None
        if rec is None:
            return False
        crop = self.w.crops.get(rec.rle)
        if crop is None:
            return False
        self.w.polygons.show(candidate(rec.id), crop.full(), rec.updated)
        return True

    def target(self) -> Target | None:
        return candidate(self.selected) if self.selected is not None else None

    def cycle(self, step: int = 1) -> bool:
        ids = self.shown_ids()
        if not ids:
            return False
        i = ids.index(self.selected) + step if self.selected in ids else (0 if step > 0 else -1)
        self.select(ids[i % len(ids)])
        return True

    def _threshold_changed(self, value: float) -> None:
        self.w.settings.setValue(THRESHOLD_KEY, value)
        self.w.canvas.set_candidate_threshold(value)
        if self.selected is not None and self.selected not in self.shown_ids():
            self.select(None)

    # -- decisions (commands)

    def accept_selected(self) -> bool:
        if self.selected is None:
            return False
        after = self._next_after(self.selected)
        command = rv.AcceptCandidates([self.selected], self.w.classes.current_id)
        if self.w._push(command) is not None:
            self._select_next(after)
        return True

    def reject_selected(self) -> bool:
        if self.selected is None:
            return False
        after = self._next_after(self.selected)
        if self.w._push(rv.RejectCandidates([self.selected])) is not None:
            self._select_next(after)
        return True

    def accept_all_shown(self) -> None:
        self._all(rv.accept_all_shown(self.w.project, self.w.image_id, self.threshold,
                                      self.w.classes.current_id) if self.w.image_id else None)

    def reject_all_shown(self) -> None:
        self._all(rv.reject_all_shown(self.w.project, self.w.image_id, self.threshold)
                  if self.w.image_id else None)

    def _all(self, command) -> None:
        if command is None:
            self.status.emit("no candidate is shown on this image")
            return
        if self.w._push(command) is not None:
            self.status.emit(command.description)

    def _next_after(self, cand_id: int) -> int | None:
        ids = self.shown_ids()
        if cand_id not in ids or len(ids) < 2:
            return None
        return ids[(ids.index(cand_id) + 1) % len(ids)]

    def _select_next(self, cand_id: int | None) -> None:
        """After a decision the next shown candidate is selected: review with Enter /
        Delete alone."""
        self.select(cand_id if cand_id in self.shown_ids() else None)

    def next_pending_image(self) -> None:
        rec = self.w.project.next_with_candidates(self.w.image_id)
        if rec is None:
            self.status.emit("no image has pending candidates")
        elif rec.id != self.w.image_id:
            self.w.show_image(rec.id)
        else:
            self.status.emit("only this image has pending candidates")
