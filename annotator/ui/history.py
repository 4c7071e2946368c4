"""Undo and redo in the window: the prompt first, then the history of the image shown.

* While a prompt is live (points or a box on the canvas), Ctrl+Z takes back its last
  point (or the box) and Ctrl+Shift+Z puts it back (tools.PromptState keeps those steps).
* Otherwise undo/redo act on the current image's own CommandStack: one stack per image,
  made on its first change and kept while the project is open. An edit on an image you
  are not looking at can never be undone from here: go to that image to undo it.
* Class commands (add, rename, recolour) are project-wide, but they go on the stack of
  the image shown when they were done, in order with that image's edits: Ctrl+Z right
  after renaming a class undoes the rename, wherever in the project the class is used,
  and the implicit "object" class made by a first accept is undone right after that
  accept. A command done while no image is shown (an unreadable image, an empty
  project) goes on the project stack, which undo/redo consult only when the current
  image's stack has nothing to undo/redo. Undoing "add class" while another image still
  uses the class is refused by the store, with its message, and stays in the history.
* Review commands (accept / reject / edit candidates) are per image like any edit.

The Edit menu names the step and where it applies ("Undo Add annotation — img0.png").
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject

from annotator.core import commands as cmd
from annotator.core.errors import CoreError
from annotator.ui.feedback import without_paths

PROJECT = None          # the key of the project stack (no image shown)


class History(QObject):
    """The window's undo/redo (`w` is the MainWindow)."""

    def __init__(self, window: Any):
        super().__init__(window)
        self.w = window
        self._stacks: dict[int | None, cmd.CommandStack] = {}

    def stack(self, image_id: int | None) -> cmd.CommandStack:
        """The stack of `image_id` (PROJECT: the project's), made on first use."""
        if image_id not in self._stacks:
            stack = cmd.CommandStack(self.w.project)
            stack.add_listener(self.update_actions)
            self._stacks[image_id] = stack
        return self._stacks[image_id]

    @property
    def current(self) -> cmd.CommandStack:
        return self.stack(self.w.image_id)

    def push(self, command) -> Any:
        """Do `command` on the current image's stack; None (and the reason in the status
        bar) when the store refuses it."""
        try:
            return self.current.push(command)
        except CoreError as exc:
            self.w.statusBar().showMessage(f"not done: {without_paths(str(exc), self.w.project)}")
            return None

    def _target(self, redo: bool) -> tuple[cmd.CommandStack, int | None] | None:
        """The stack the next undo (redo) applies to and its key; None: nothing to do."""
        image_id = self.w.image_id
        for key in ((image_id, PROJECT) if image_id is not None else (PROJECT,)):
            stack = self._stacks.get(key)
            if stack is not None and (stack.can_redo if redo else stack.can_undo):
                return stack, key
        return None

    def _where(self, key: int | None) -> str:
        if key is PROJECT:
            return "project"
        try:
            return self.w.project.image(key).file_name
        except CoreError:
            return f"image {key}"

    # -- Ctrl+Z / Ctrl+Shift+Z

    def undo(self) -> None:
        labeler = self.w.labeler
        if not labeler.prompt.is_empty:
            kind = labeler.undo_step()
            if kind is None:             # a prompt without steps (text): clear it
                labeler.clear()
                self._say("cleared the prompt")
            else:
                self._say(f"took back the last prompt {kind}")
            self.update_actions()
            return
        labeler.prompt.redo_steps.clear()    # the image's history is next: stay in order
        self._run(redo=False)

    def redo(self) -> None:
        labeler = self.w.labeler
        if labeler.prompt.redo_steps:
            kind = labeler.redo_step()
            self._say(f"put the prompt {kind} back")
            self.update_actions()
        elif not labeler.prompt.is_empty:        # the image's history waits for the prompt
            self._say("nothing to redo in the prompt (Enter accepts it, Esc clears it)")
        else:
            self._run(redo=True)

    def _run(self, redo: bool) -> None:
        target = self._target(redo)
        if target is None:
            self._say(f"nothing to {'redo' if redo else 'undo'} on "
                      f"{self._where(self.w.image_id)} (each image has its own history)"
                      if self.w.image_id is not None else
                      f"nothing to {'redo' if redo else 'undo'}")
            return
        stack, key = target
        try:
            done = stack.redo() if redo else stack.undo()
        except CoreError as exc:
            self._say(without_paths(str(exc), self.w.project))
            return
        if done is not None:
            self._say(f"{'Redid' if redo else 'Undid'} {done.description.lower()} "
                      f"({self._where(key)})")
            self.w._flush()

    def _say(self, text: str) -> None:
        self.w.statusBar().showMessage(text)

    # -- the Edit menu

    def texts(self) -> tuple[str, str]:
        """The Edit menu's undo and redo entries as they read now."""
        prompt = self.w.labeler.prompt
        if not prompt.is_empty:
            undo = f"Undo prompt {prompt.undo_kind}" if prompt.undo_kind else "Undo (clear prompt)"
        else:
            undo = self._text("Undo", self._target(redo=False), undo=True)
        if prompt.redo_kind:
            redo = f"Redo prompt {prompt.redo_kind}"
        elif not prompt.is_empty:
            redo = "Redo"
        else:
            redo = self._text("Redo", self._target(redo=True), undo=False)
        return undo, redo

    def _text(self, verb: str, target, undo: bool) -> str:
        if target is None:
            image_id = self.w.image_id
            return verb if image_id is None else f"{verb} — nothing on {self._where(image_id)}"
        stack, key = target
        return f"{verb} {stack.undo_text if undo else stack.redo_text} — {self._where(key)}"

    def update_actions(self) -> None:
        w = self.w
        if not hasattr(w, "undo_action"):
            return                               # during the window's construction
        undo, redo = self.texts()
        w.undo_action.setText(undo)
        w.redo_action.setText(redo)
        # Both stay enabled: the key then says "nothing to undo on img3.png", which tells
        # a newcomer that each image has its own history (a dead key would not).
