"""What the window tells the user as they work: the zoom in the status bar, the mask
fill menu, the brush circle's size, and short-lived confirmations of accept, review,
delete and merge (they go after a few seconds, so the status bar never goes stale)."""
from __future__ import annotations

from PySide6.QtWidgets import QLabel

from annotator.ui.mask_style import install_fill_menu

CONFIRM_MS = 4000          # how long a confirmation stays in the status bar


def confirm(w, text: str) -> None:
    w.statusBar().showMessage(text, CONFIRM_MS)


def install(w) -> None:
    """Called once the window's canvas, brush, menus and status bar exist."""
    w.zoom_label = QLabel("—", w)
    w.zoom_label.setToolTip("zoom: view pixels per image pixel (F fits, wheel zooms)")
    w.statusBar().insertPermanentWidget(0, w.zoom_label)
    w.canvas.zoom_changed.connect(lambda z: w.zoom_label.setText(zoom_text(z)))
    if w.canvas.image_size is not None:
        w.zoom_label.setText(zoom_text(w.canvas.zoom))
    w.canvas.set_brush_radius(w.brush.radius)
    w.brush.radius_changed.connect(w.canvas.set_brush_radius)
    install_fill_menu(w)


def zoom_text(zoom: float) -> str:
    return f"{zoom * 100:.0f}%"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def without_paths(text: str, project) -> str:
    """A store message for people: without the project database's path in front (or
    anywhere; the project's file name stands for it)."""
    path = str(project.path)
    text = text.replace(path + ": ", "")
    return text.replace(path, project.path.name)
