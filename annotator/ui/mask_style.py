"""How masks look on the canvas, so they stay visible on any photo.

* An accepted instance: a fill in its class colour at the opacity chosen in
  View ▸ Mask fill (remembered in QSettings), its outline in the class colour at full
  opacity, and around that a one-pixel ring in a contrasting colour (black around light
  colours, white around dark ones), so the edge shows on bright and on dark images.
* The click preview: a lighter fill and an animated black-and-white dashed outline
  ("marching ants"), unlike accepted masks (solid outline) and candidates (cyan dashes,
  candidate_layer.py).
"""
from __future__ import annotations

from PySide6.QtGui import QAction, QActionGroup, QColor

FILL_KEY = "view/fill_opacity"
FILL_CHOICES = (0, 20, 35, 50, 70)        # percent, View ▸ Mask fill
DEFAULT_FILL = 35
SELECTED_BOOST = 25                       # a selected instance's fill is this much stronger
PREVIEW_FILL = 0.6                        # the preview's fill, relative to accepted ones


def contrast_color(color: QColor) -> QColor:
    """Black or white, whichever stands out more against `color` (relative luminance)."""
    lum = 0.2126 * color.redF() + 0.7152 * color.greenF() + 0.0722 * color.blueF()
    return QColor(0, 0, 0) if lum > 0.45 else QColor(255, 255, 255)


def fill_alpha(percent: int, selected: bool = False) -> int:
    """0-255 alpha of a fill at `percent` opacity (a selected instance's is stronger)."""
    p = percent + (SELECTED_BOOST if selected else 0)
    return int(round(255 * max(0, min(100, p)) / 100))


def read_fill(settings) -> int:
    try:
        value = int(settings.value(FILL_KEY, DEFAULT_FILL))
    except (TypeError, ValueError):
        return DEFAULT_FILL
    return value if 0 <= value <= 100 else DEFAULT_FILL


def set_fill(w, percent: int) -> None:
    """The window's fill opacity: remembered, redrawn, checked in the menu."""
    w.settings.setValue(FILL_KEY, int(percent))
    w.canvas.fill_percent = int(percent)
    w._redraw_instances()
    w.labeler.set_preview_color(w.labeler.preview_color)
    for action in getattr(w, "fill_actions", {}).values():
        action.setChecked(action.data() == int(percent))
    w.statusBar().showMessage(f"mask fill {percent}%", 2000)


def install_fill_menu(w) -> None:
    """View ▸ Mask fill: the opacity choices (no keys: the table's keys stay as listed)."""
    percent = read_fill(w.settings)
    w.canvas.fill_percent = percent
    menu = w.menus["View"].addMenu("Mask fill")
    group = QActionGroup(menu)
    w.fill_actions = {}
    for choice in FILL_CHOICES if percent in FILL_CHOICES else sorted({*FILL_CHOICES, percent}):
        action = QAction("outline only" if choice == 0 else f"{choice}%", menu)
        action.setCheckable(True)
        action.setData(choice)
        action.setChecked(choice == percent)
        action.triggered.connect(lambda _=False, c=choice: set_fill(w, c))
        group.addAction(action)
        menu.addAction(action)
        w.fill_actions[choice] = action
    w.fill_menu = menu
