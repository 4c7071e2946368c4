"""The window's menus and keys, as one table (ACTIONS): the window binds it, the start
page binds its `start` rows, and Help ▸ Keyboard shortcuts (shortcuts.py) lists it, so
the sheet cannot drift from what the keys do. Mouse gestures, which are the canvas's and
not actions, are listed in GESTURES for the sheet.

Single-letter keys are window-wide shortcuts; text fields take their own letters (Qt's
shortcut override), and PromptField keeps Enter/Esc.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence

from annotator.ui.autolabel_dialog import show_autolabel_dialog
from annotator.ui.eval_dialog import SHORTCUT as EVAL_SHORTCUT, show_eval_dialog
from annotator.ui.model_dialog import show_model_dialog
from annotator.ui.train_dialog import SHORTCUT as TRAIN_SHORTCUT, show_train_dialog

MENUS = ("File", "Edit", "View", "Image", "Review", "Help")


@dataclass(frozen=True)
class Act:
    menu: str                       # one of MENUS, or "" (a key without a menu entry)
    text: str
    keys: tuple[str, ...]           # QKeySequence text, portable ("Ctrl+Z", "Return")
    run: Callable[[Any], Any]       # called with the window
    name: str = ""                  # the window attribute the QAction is kept in
    start: bool = False             # also on the start page (nothing open)
    separator: bool = False         # a separator before it in its menu


def _sel(w) -> list[int]:
    return w.instances.selected_ids


def _opener(w):
    from annotator.ui.opening import opener_of
    return opener_of(w)


def _tab(w) -> None:
    from annotator.ui.honest import tab
    tab(w)


def _shortcuts(w) -> None:
    from annotator.ui.shortcuts import show_shortcuts
    show_shortcuts(w)


ACTIONS: tuple[Act, ...] = (
    Act("File", "Open folder…", ("Ctrl+O",), lambda w: _opener(w).open_folder_dialog(),
        start=True),
    Act("File", "Open project file…", ("Ctrl+Shift+O",),
        lambda w: _opener(w).open_project_dialog(), start=True),
    Act("File", "Close project", ("Ctrl+W",), lambda w: _opener(w).close_project()),
    Act("File", "Export…", ("Ctrl+E",), lambda w: w.open_export_dialog(), separator=True),
    Act("File", "Models…", ("Ctrl+M",), lambda w: show_model_dialog(w)),
    Act("File", "Auto-label images…", ("Ctrl+Shift+A",), lambda w: show_autolabel_dialog(w)),
    Act("File", "Train…", (TRAIN_SHORTCUT,), lambda w: show_train_dialog(w)),
    Act("File", "Evaluate…", (EVAL_SHORTCUT,), lambda w: show_eval_dialog(w)),
    Act("File", "Restart engines", (), lambda w: w.reload_engines()),
    Act("File", "Quit", ("Ctrl+Q",), lambda w: w.close(), start=True, separator=True),

    Act("Edit", "Undo (while prompting: the last point or box; else this image's last step)",
        ("Ctrl+Z",), lambda w: w.undo(), name="undo_action"),
    Act("Edit", "Redo (put that point, box or step back)", ("Ctrl+Shift+Z", "Ctrl+Y"),
        lambda w: w.redo(), name="redo_action"),
    Act("Edit", "Accept mask (or the selected candidate)", ("Return", "Enter"),
        lambda w: w.accept_preview(), separator=True),
    Act("Edit", "Clear prompt / leave brush", ("Esc",), lambda w: w.escape()),
    Act("Edit", "Next candidate mask (or next candidate)", ("Tab",),
        lambda w: _tab(w)),
    Act("Edit", "Delete selected vertex, candidate or instances", ("Del", "Backspace"),
        lambda w: w.delete_key(), separator=True),
    Act("Edit", "Selected instances to current class", ("C",),
        lambda w: w.reclass_instances(_sel(w))),
    Act("Edit", "Merge selected instances", ("M",), lambda w: w.merge_instances(_sel(w))),
    Act("Edit", "Split selected instance into its parts", ("K",),
        lambda w: w.split_instances(_sel(w))),
    Act("Edit", "Brush on the selected instance", ("B",), lambda w: w.set_mode("brush"),
        separator=True),
    Act("Edit", "Eraser on the selected instance", ("E",), lambda w: w.set_mode("eraser")),
    Act("Edit", "Bigger brush", ("]",), lambda w: w.brush.resize(1.25)),
    Act("Edit", "Smaller brush", ("[",), lambda w: w.brush.resize(0.8)),
    *(Act("", f"Pick class {d} (in the Classes list)", (str(d),),
          lambda w, i=d - 1: w.classes.pick_index(i)) for d in range(1, 10)),

    Act("View", "Fit to window", ("F",), lambda w: w.canvas.fit()),
    Act("View", "Coarser polygon (fewer handles)", (",",), lambda w: w.detail.step(1)),
    Act("View", "Finer polygon (more handles)", (".",), lambda w: w.detail.step(-1)),
    Act("View", "Zoom in", ("Ctrl++",), lambda w: w.canvas.zoom_by(1.25)),
    Act("View", "Zoom out", ("Ctrl+-",), lambda w: w.canvas.zoom_by(0.8)),

    Act("Image", "Next image", ("D", "PgDown"), lambda w: w.step_image(1)),
    Act("Image", "Previous image", ("A", "PgUp"), lambda w: w.step_image(-1)),
    Act("Image", "Toggle reviewed", ("R",), lambda w: w.toggle_reviewed()),
    Act("Image", "Next unreviewed image", ("N",), lambda w: w.next_unreviewed()),

    Act("Review", "Auto: propose every object", ("G",), lambda w: w.auto_propose()),
    Act("Review", "Accept all shown candidates", ("Shift+Return", "Shift+Enter"),
        lambda w: w.review.accept_all_shown(), separator=True),
    Act("Review", "Reject all shown candidates", ("Shift+Del", "Shift+Backspace"),
        lambda w: w.review.reject_all_shown()),
    Act("Review", "Previous candidate", ("Backtab",), lambda w: w.review.cycle(-1)),
    Act("Review", "Next image with pending candidates", ("Shift+N",),
        lambda w: w.review.next_pending_image()),

    Act("Help", "Keyboard shortcuts", ("F1", "?"), _shortcuts, start=True),
)

# The canvas's mouse gestures (not actions): (gesture, what it does), for the sheet.
GESTURES: tuple[tuple[str, str], ...] = (
    ("Left click", "object point (with no prompt: selects the candidate or instance under "
                   "it; click it again to put a point there)"),
    ("Right click, Shift+click", "background point"),
    ("Left drag", "box around the object"),
    ("Ctrl+click", "select the candidate or instance under the cursor"),
    ("Drag a vertex", "move it (the selected instance or candidate)"),
    ("Double-click an edge, Alt+click", "add a vertex there"),
    ("Right-click a vertex", "delete it"),
    ("Wheel", "zoom at the cursor"),
    ("Middle drag, Space+drag", "pan"),
    ("Drop a folder or images", "open them"),
)

# How keys are written for people (the README and the sheet): Qt's portable names first.
_NAMES = {"Return": "Enter", "Backtab": "Shift+Tab", "PgDown": "PageDown", "PgUp": "PageUp",
          "Del": "Delete", "Shift+Return": "Shift+Enter", "Shift+Del": "Shift+Delete"}


def key_name(sequence: QKeySequence | str) -> str:
    text = QKeySequence(sequence).toString(QKeySequence.SequenceFormat.PortableText)
    return _NAMES.get(text, text)


def key_names(act: Act) -> list[str]:
    return list(dict.fromkeys(key_name(k) for k in act.keys))


def _bind(w, act: Act, menus: dict[str, Any]) -> QAction:
    action = QAction(act.text, w)
    action.setShortcuts([QKeySequence(k) for k in act.keys])
    action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    action.triggered.connect(lambda _=False, run=act.run: run(w))
    w.addAction(action)
    menu = menus.get(act.menu)
    if menu is not None:
        if act.separator and not menu.isEmpty():
            menu.addSeparator()
        menu.addAction(action)
    if act.name:
        setattr(w, act.name, action)
    return action


def _install(w, acts) -> None:
    bar = w.menuBar()
    used = {a.menu for a in acts}
    menus = {name: bar.addMenu(f"&{name}") for name in MENUS if name in used}
    w.menus = menus
    w.bound_actions = []
    for act in acts:
        w.bound_actions.append((act, _bind(w, act, menus)))
        if act.text == "Open project file…":         # the Recent submenu follows it
            from annotator.ui.opening import fill_recent_menu
            recent = menus["File"].addMenu("Recent")
            recent.aboutToShow.connect(lambda m=recent: fill_recent_menu(m, _opener(w)))
            w.recent_menu = recent


def install_actions(w) -> None:
    """Menus and shortcuts of the main window `w` (every row of ACTIONS)."""
    _install(w, ACTIONS)


def install_start_actions(w) -> None:
    """The start page's menus: the rows that make sense with nothing open."""
    _install(w, [a for a in ACTIONS if a.start])
