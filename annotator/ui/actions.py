"""The main window's menus and keys. Single-letter keys are window-wide shortcuts; text
fields take their own letters (Qt's shortcut override), and PromptField keeps Enter/Esc."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence

from annotator.ui.autolabel_dialog import show_autolabel_dialog
from annotator.ui.model_dialog import show_model_dialog

K = Qt.Key


def _action(window, text: str, keys, slot, menu=None) -> QAction:
    action = QAction(text, window)
    action.setShortcuts([QKeySequence(k) for k in (keys if isinstance(keys, list) else [keys])])
    action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    action.triggered.connect(slot)
    window.addAction(action)
    if menu is not None:
        menu.addAction(action)
    return action


def install_actions(w) -> None:
    """Menus and shortcuts of the main window `w`; sets w.undo_action / w.redo_action."""
    bar = w.menuBar()
    file_menu, edit_menu = bar.addMenu("&File"), bar.addMenu("&Edit")
    view_menu, image_menu = bar.addMenu("&View"), bar.addMenu("&Image")
    review_menu = bar.addMenu("&Review")
    selected = lambda: w.instances.selected_ids  # noqa: E731

    _action(w, "Export…", "Ctrl+E", w.open_export_dialog, file_menu)
    _action(w, "Models…", "Ctrl+M", lambda: show_model_dialog(w), file_menu)
    _action(w, "Auto-label images…", "Ctrl+Shift+A", lambda: show_autolabel_dialog(w),
            file_menu)
    _action(w, "Restart engines", [], w.reload_engines, file_menu)
    _action(w, "Quit", "Ctrl+Q", w.close, file_menu)

    w.undo_action = _action(w, "Undo", "Ctrl+Z", w.undo, edit_menu)
    w.redo_action = _action(w, "Redo", ["Ctrl+Shift+Z", "Ctrl+Y"], w.redo, edit_menu)
    edit_menu.addSeparator()
    _action(w, "Accept mask (or the selected candidate)", [K.Key_Return, K.Key_Enter],
            w.accept_preview, edit_menu)
    _action(w, "Clear prompt / leave brush", K.Key_Escape, w.escape, edit_menu)
    _action(w, "Next candidate mask (or next candidate)", K.Key_Tab,
            lambda: w.labeler.cycle_candidate() or w.review.cycle(1), edit_menu)
    edit_menu.addSeparator()
    _action(w, "Delete selected vertex, candidate or instances", [K.Key_Delete, K.Key_Backspace],
            w.delete_key, edit_menu)
    _action(w, "Selected instances to current class", "C",
            lambda: w.reclass_instances(selected()), edit_menu)
    _action(w, "Merge selected instances", "M", lambda: w.merge_instances(selected()),
            edit_menu)
    _action(w, "Split selected instance into its parts", "K",
            lambda: w.split_instances(selected()), edit_menu)
    edit_menu.addSeparator()
    _action(w, "Brush on the selected instance", "B", lambda: w.set_mode("brush"), edit_menu)
    _action(w, "Eraser on the selected instance", "E", lambda: w.set_mode("eraser"), edit_menu)
    _action(w, "Bigger brush", "]", lambda: w.brush.resize(1.25), edit_menu)
    _action(w, "Smaller brush", "[", lambda: w.brush.resize(0.8), edit_menu)
    for digit in range(1, 10):
        _action(w, f"Class {digit}", str(digit),
                lambda _=False, i=digit - 1: w.classes.pick_index(i))

    _action(w, "Fit to window", "F", w.canvas.fit, view_menu)
    _action(w, "Coarser polygon", ",", lambda: w.detail.step(1), view_menu)
    _action(w, "Finer polygon", ".", lambda: w.detail.step(-1), view_menu)
    _action(w, "Zoom in", "Ctrl++", lambda: w.canvas.zoom_by(1.25), view_menu)
    _action(w, "Zoom out", "Ctrl+-", lambda: w.canvas.zoom_by(0.8), view_menu)

    _action(w, "Next image", ["D", K.Key_PageDown], lambda: w.step_image(1), image_menu)
    _action(w, "Previous image", ["A", K.Key_PageUp], lambda: w.step_image(-1), image_menu)
    _action(w, "Toggle reviewed", "R", w.toggle_reviewed, image_menu)
    _action(w, "Next unreviewed image", "N", w.next_unreviewed, image_menu)

    r = w.review
    _action(w, "Auto: propose every object", "G", w.auto_propose, review_menu)
    review_menu.addSeparator()
    _action(w, "Accept all shown candidates", ["Shift+Return", "Shift+Enter"],
            r.accept_all_shown, review_menu)
    _action(w, "Reject all shown candidates", ["Shift+Delete", "Shift+Backspace"],
            r.reject_all_shown, review_menu)
    _action(w, "Previous candidate", K.Key_Backtab, lambda: r.cycle(-1), review_menu)
    _action(w, "Next image with pending candidates", "Shift+N", r.next_pending_image,
            review_menu)
