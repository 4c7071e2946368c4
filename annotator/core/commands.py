"""Undo/redo as commands over the project store, without Qt (the GUI binds to it).

Each command runs its real operation the first time it is done and keeps a snapshot of
every record it touched, before and after. Undo writes the "before" snapshot back and
redo the "after" one, so both return the store to exactly the earlier state: same ids
(a deleted annotation comes back with its id, so exports stay stable), same draw order,
same timestamps. `CommandStack` runs every do/undo/redo as one transaction, so a crash
in the middle of any of them leaves the project as it was before it.

Undo and redo first check that every record they would write back still is exactly as
the command left it (undo) or found it (redo). A record changed since, by another
window or process, makes them refuse (StaleCommandError) rather than silently revert
or resurrect someone else's edit; the stack then drops that step from its history.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
import logging
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from annotator.core.geometry import rle_to_mask
from annotator.core.dataset import AnnotationRecord, CandidateRecord, CategoryRecord
from annotator.core.errors import ProjectError
from annotator.core.store import Project

log = logging.getLogger(__name__)

# Snapshot keys: ("annotation" | "category" | "candidate", id); value None = "does not exist".
Key = tuple[str, int]
Record = AnnotationRecord | CategoryRecord | CandidateRecord | None


class StaleCommandError(ProjectError):
    """Undo/redo refused: a record it would overwrite changed since it was recorded."""


class Command(ABC):
    """One undoable step. `do` may be called again after `undo` (redo)."""
    description = ""

    @abstractmethod
    def do(self, project: Project) -> None:
        """Apply the step (also used for redo)."""

    @abstractmethod
    def undo(self, project: Project) -> None:
        """Restore the state from before `do`."""


class SnapshotCommand(Command):
    """Subclasses implement `_keys_before` (records that exist and will change) and
    `_apply` (the operation; returns the keys of records it created)."""

    def __init__(self) -> None:
        self._before: dict[Key, Record] | None = None
        self._after: dict[Key, Record] | None = None

    def _keys_before(self, project: Project) -> list[Key]:
        return []

    @abstractmethod
    def _apply(self, project: Project) -> list[Key]:
        """Perform the operation; return the keys of the records it created."""

    def do(self, project: Project) -> None:
        if self._after is not None:      # redo
            _check_unchanged(project, self._before, "redo", self.description)
            _write(project, self._after)
            return
        with project.transaction():   # also atomic when used without a CommandStack
            before = {key: _read(project, key) for key in self._keys_before(project)}
            created = self._apply(project)
            keys = list(before) + [key for key in created if key not in before]
            after = {key: _read(project, key) for key in keys}
        self._after, self._before = after, {key: before.get(key) for key in keys}

    def undo(self, project: Project) -> None:
        if self._before is None:
            raise ProjectError(f"cannot undo {self.description!r}: it was never done")
        _check_unchanged(project, self._after, "undo", self.description)
        _write(project, self._before)


def _read(project: Project, key: Key) -> Record:
    kind, ident = key
    read = {"annotation": project.annotation, "category": project.category,
            "candidate": project.candidate}[kind]
    try:
        return read(ident)
    except ProjectError:
        return None


def _check_unchanged(project: Project, expected: dict[Key, Record] | None, verb: str,
                     description: str) -> None:
    """StaleCommandError naming the first record that is no longer as `expected`."""
    for key, rec in (expected or {}).items():
        now = _read(project, key)
        if now != rec:
            kind, ident = key
            what = "was deleted" if now is None else (
                "was created" if rec is None else "was changed")
            raise StaleCommandError(
                f"{project.path}: cannot {verb} {description!r}: {kind} {ident} {what} "
                f"since (in another window or process?); nothing was changed")


def _write(project: Project, state: dict[Key, Record]) -> None:
    """Make the store hold exactly `state` for its keys. Categories are created before
    and deleted after the annotations that may refer to them."""
    def keys(kind: str, present: bool) -> list[Key]:
        return [k for k, rec in state.items() if k[0] == kind and (rec is not None) == present]

    with project.transaction():
        for key in keys("category", True):
            project.put_category(state[key])  # type: ignore[arg-type]
        for key in keys("annotation", False):
            if _read(project, key) is not None:
                project.delete_annotation(key[1])
        for key in keys("candidate", False):
            if _read(project, key) is not None:
                project.delete_candidate(key[1])
        project.put_annotations([state[k] for k in keys("annotation", True)])  # type: ignore[misc]
        project.put_candidates([state[k] for k in keys("candidate", True)])  # type: ignore[misc]
        for key in keys("category", False):
            if _read(project, key) is not None:
                project.delete_category(key[1])


def _ids(ids: int | Sequence[int]) -> list[int]:
    return [ids] if isinstance(ids, int) else list(ids)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# ---- annotations ----------------------------------------------------------------------------

class AddAnnotation(SnapshotCommand):
    def __init__(self, image_id: int, category_id: int, mask_or_rle: Any, *,
                 score: float | None = None, engine: str = "",
                 prompts: Sequence[dict[str, Any]] = (), iscrowd: bool = False):
        super().__init__()
        self.description = "Add annotation"
        self._args = (image_id, category_id, mask_or_rle)
        self._kwargs = dict(score=score, engine=engine, prompts=prompts, iscrowd=iscrowd)
        self.annotation_id: int | None = None     # known after the first do()

    def _apply(self, project: Project) -> list[Key]:
        rec = project.add_annotation(*self._args, **self._kwargs)
        self.annotation_id = rec.id
        self._args = self._kwargs = None  # type: ignore[assignment]  # the snapshot has it
        return [("annotation", rec.id)]


class DeleteAnnotation(SnapshotCommand):
    def __init__(self, annotation_ids: int | Sequence[int]):
        super().__init__()
        self.ids = _ids(annotation_ids)
        self.description = "Delete " + _plural(len(self.ids), "annotation")

    def _keys_before(self, project: Project) -> list[Key]:
        for ident in self.ids:
            project.annotation(ident)     # a missing one fails here, before any change
        return [("annotation", i) for i in self.ids]

    def _apply(self, project: Project) -> list[Key]:
        for ident in self.ids:
            project.delete_annotation(ident)
        return []


class EditMask(SnapshotCommand):
    """Replace a mask (brush, eraser, refined prediction); `fields` may set score,
    engine and prompts as `Project.update_mask` does."""

    def __init__(self, annotation_id: int, mask_or_rle: Any, **fields: Any):
        super().__init__()
        self.id, self._mask, self._fields = annotation_id, mask_or_rle, fields
        self.description = "Edit mask"

    def _keys_before(self, project: Project) -> list[Key]:
        return [("annotation", self.id)]

    def _apply(self, project: Project) -> list[Key]:
        project.update_mask(self.id, self._mask, **self._fields)
        self._mask = None
        return []


class ChangeCategory(SnapshotCommand):
    def __init__(self, annotation_ids: int | Sequence[int], category_id: int):
        super().__init__()
        self.ids, self.category_id = _ids(annotation_ids), category_id
        self.description = "Change class of " + _plural(len(self.ids), "annotation")

    def _keys_before(self, project: Project) -> list[Key]:
        return [("annotation", i) for i in self.ids]

    def _apply(self, project: Project) -> list[Key]:
        for ident in self.ids:
            project.set_category(ident, self.category_id)
        return []


class Merge(SnapshotCommand):
    """Several annotations of one image -> one: the first id keeps the union of the
    masks (its class, draw order and prompt log; score cleared), the others go."""

    def __init__(self, annotation_ids: Sequence[int]):
        super().__init__()
        self.ids = list(dict.fromkeys(annotation_ids))
        self.description = "Merge " + _plural(len(self.ids), "annotation")

    def _keys_before(self, project: Project) -> list[Key]:
        if len(self.ids) < 2:
            raise ProjectError(f"{project.path}: merging needs at least two annotations, "
                               f"got {self.ids}")
        recs = [project.annotation(i) for i in self.ids]
        if len({r.image_id for r in recs}) > 1:
            raise ProjectError(f"{project.path}: annotations {self.ids} are on different "
                               "images and cannot be merged")
        return [("annotation", i) for i in self.ids]

    def _apply(self, project: Project) -> list[Key]:
        recs = [project.annotation(i) for i in self.ids]
        union = np.zeros(recs[0].rle["size"], dtype=bool)
        for rec in recs:
            union |= rle_to_mask(rec.rle)
        project.update_mask(self.ids[0], union, score=None)
        for ident in self.ids[1:]:
            project.delete_annotation(ident)
        return []


class Split(SnapshotCommand):
    """One annotation -> several: its connected parts (8-connected), or the given
    masks. The original id keeps the largest part (the first given mask); the others
    become new annotations of the same class, drawn on top."""

    def __init__(self, annotation_id: int, masks: Sequence[Any] | None = None):
        super().__init__()
        self.id, self._masks = annotation_id, masks
        self.new_ids: list[int] = []
        self.description = "Split annotation"

    def _keys_before(self, project: Project) -> list[Key]:
        return [("annotation", self.id)]

    def _apply(self, project: Project) -> list[Key]:
        rec = project.annotation(self.id)
        parts = list(self._masks) if self._masks is not None else _components(rle_to_mask(rec.rle))
        if len(parts) < 2:
            raise ProjectError(f"{project.path}: annotation {self.id} has "
                               f"{_plural(len(parts), 'part')}; nothing to split")
        project.update_mask(self.id, parts[0], score=None)
        self.new_ids = [project.add_annotation(rec.image_id, rec.category_id, part,
                                               engine=rec.engine, prompts=rec.prompts,
                                               iscrowd=rec.iscrowd).id for part in parts[1:]]
        self.description = f"Split annotation into {len(parts)}"
        self._masks = None
        return [("annotation", i) for i in self.new_ids]


class Reorder(SnapshotCommand):
    def __init__(self, image_id: int, ordered_ids: Sequence[int]):
        super().__init__()
        self.image_id, self.ordered_ids = image_id, list(ordered_ids)
        self.description = "Reorder annotations"

    def _keys_before(self, project: Project) -> list[Key]:
        return [("annotation", r.id) for r in project.annotations(self.image_id)]

    def _apply(self, project: Project) -> list[Key]:
        project.set_order(self.image_id, self.ordered_ids)
        return []


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """Connected parts of a mask (8-connected, as geometry counts parts), largest first."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8),
                                                                connectivity=8)
    order = sorted(range(1, count), key=lambda i: -stats[i, cv2.CC_STAT_AREA])
    return [labels == i for i in order]


# ---- categories ---------------------------------------------------------------------------

class AddCategory(SnapshotCommand):
    def __init__(self, name: str, color: str = "", supercategory: str = ""):
        super().__init__()
        self._args = (name, color, supercategory)
        self.description = f"Add class {name!r}"
        self.category_id: int | None = None

    def _apply(self, project: Project) -> list[Key]:
        self.category_id = project.add_category(*self._args).id
        return [("category", self.category_id)]


class RenameCategory(SnapshotCommand):
    def __init__(self, category_id: int, name: str):
        super().__init__()
        self.id, self.name = category_id, name
        self.description = f"Rename class to {name!r}"

    def _keys_before(self, project: Project) -> list[Key]:
        return [("category", self.id)]

    def _apply(self, project: Project) -> list[Key]:
        project.rename_category(self.id, self.name)
        return []


class RecolorCategory(SnapshotCommand):
    def __init__(self, category_id: int, color: str):
        super().__init__()
        self.id, self.color = category_id, color
        self.description = "Change class colour"

    def _keys_before(self, project: Project) -> list[Key]:
        return [("category", self.id)]

    def _apply(self, project: Project) -> list[Key]:
        project.set_category_color(self.id, self.color)
        return []


class DeleteCategory(SnapshotCommand):
    """Delete a class in one step: its annotations (on every image) move to the class
    `move_to`, or are deleted with it when `move_to` is None. The snapshot holds the class
    and those annotations, so undo brings back both exactly (ids, masks, order)."""

    def __init__(self, category_id: int, move_to: int | None = None):
        super().__init__()
        self.id, self.move_to = category_id, move_to
        self.description = "Delete class"
        self.annotation_ids: list[int] = []

    def _keys_before(self, project: Project) -> list[Key]:
        rec = project.category(self.id)
        self.description = f"Delete class {rec.name!r}"
        if self.move_to is not None:
            if self.move_to == self.id:
                raise ProjectError(f"{project.path}: class {rec.name!r} cannot take its own "
                                   "annotations")
            project.category(self.move_to)              # it exists
        self.annotation_ids = [a.id for a in project.annotations() if a.category_id == self.id]
        return [("category", self.id)] + [("annotation", i) for i in self.annotation_ids]

    def _apply(self, project: Project) -> list[Key]:
        for ident in self.annotation_ids:
            if self.move_to is None:
                project.delete_annotation(ident)
            else:
                project.set_category(ident, self.move_to)
        project.delete_category(self.id)
        return []


# ---- the stack ------------------------------------------------------------------------

class CommandStack:
    """Unlimited undo/redo over one project for one session. Listeners are called with
    no arguments after every push/undo/redo/clear (to refresh menus and buttons)."""

    def __init__(self, project: Project):
        self.project = project
        self._done: list[Command] = []
        self._undone: list[Command] = []
        self._listeners: list[Callable[[], None]] = []

    def push(self, command: Command) -> Command:
        """Do `command` and record it; clears the redo history. On error nothing changes."""
        with self.project.transaction():
            command.do(self.project)
        self._done.append(command)
        self._undone.clear()
        self._notify()
        return command

    def undo(self) -> Command | None:
        if not self._done:
            return None
        command = self._done[-1]
        try:
            with self.project.transaction():   # on error: rolled back, history unchanged
                command.undo(self.project)
        except StaleCommandError as exc:
            raise self._drop(self._done, exc) from None
        self._undone.append(self._done.pop())
        self._notify()
        return command

    def redo(self) -> Command | None:
        if not self._undone:
            return None
        command = self._undone[-1]
        try:
            with self.project.transaction():
                command.do(self.project)
        except StaleCommandError as exc:
            raise self._drop(self._undone, exc) from None
        self._done.append(self._undone.pop())
        self._notify()
        return command

    def _drop(self, history: list[Command], exc: StaleCommandError) -> StaleCommandError:
        """A step that can never apply again leaves the history (the ones under it may
        still apply: each is checked on its own)."""
        history.pop()
        self._notify()
        return StaleCommandError(f"{exc}; the step was dropped from the history")

    def clear(self) -> None:
        """Forget the history (e.g. after an import that bypassed the stack)."""
        self._done.clear()
        self._undone.clear()
        self._notify()

    @property
    def can_undo(self) -> bool:
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)

    @property
    def undo_text(self) -> str:
        return self._done[-1].description if self._done else ""

    @property
    def redo_text(self) -> str:
        return self._undone[-1].description if self._undone else ""

    def add_listener(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _notify(self) -> None:
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:  # the change is already saved; a broken view must not hide that
                log.exception("command stack listener failed")
