"""Classes beyond adding and renaming: delete one (its annotations move to another class
or go with it, one undoable step), reorder them (remembered per project; the digit keys
follow the list), and the selected class remembered per project."""
from __future__ import annotations

import hashlib
import json

from PySide6.QtWidgets import QInputDialog

from annotator.core import commands as cmd
from annotator.ui.feedback import confirm, plural


def _key(w, what: str) -> str:
    digest = hashlib.sha1(str(w.project.path).encode()).hexdigest()[:16]
    return f"{what}/{digest}"


def install(w) -> None:
    """After the class panel has the project's classes: restore order and selection."""
    try:
        order = [int(i) for i in json.loads(w.settings.value(_key(w, "class_order"), "[]"))]
    except (TypeError, ValueError):
        order = []
    if order:
        w.classes.order = order
        w.classes.set_categories(w.project.categories())
    try:
        last = int(w.settings.value(_key(w, "last_class"), 0))
    except (TypeError, ValueError):
        last = 0
    if last:
        w.classes.select_id(last)
    w.classes.current_changed.connect(
        lambda ident: w.settings.setValue(_key(w, "last_class"), int(ident)))
    w.classes.order_changed.connect(
        lambda ids: w.settings.setValue(_key(w, "class_order"), json.dumps(ids)))
    w.classes.delete_requested.connect(lambda ident: ask_delete(w, ident))


def choose_fate(w, name: str, used: int, others: list) -> tuple[bool, int | None]:
    """(go ahead, class id to move the annotations to or None to delete them)."""
    items = [f"move them to {c.name}" for c in others] + [f"delete the {plural(used, 'annotation')}"]
    item, ok = QInputDialog.getItem(
        w, "Delete class", f"Class {name!r} is used by {plural(used, 'annotation')}. "
        "What happens to them? (Ctrl+Z undoes the whole step)", items, 0, False)
    if not ok:
        return False, None
    i = items.index(item)
    return True, (others[i].id if i < len(others) else None)


def ask_delete(w, category_id: int) -> bool:
    cat = w.project.category(category_id)
    used = sum(1 for a in w.project.annotations() if a.category_id == category_id)
    move_to = None
    if used:
        others = [c for c in w.classes.categories if c.id != category_id]
        go, move_to = choose_fate(w, cat.name, used, others)
        if not go:
            return False
    if w._push(cmd.DeleteCategory(category_id, move_to)) is None:
        return False
    if not used:
        what = ""
    elif move_to is None:
        what = f"; {plural(used, 'annotation')} deleted with it"
    else:
        what = f"; {plural(used, 'annotation')} moved to {w.project.category(move_to).name}"
    confirm(w, f"deleted class {cat.name}{what} (Ctrl+Z undoes)")
    return True
