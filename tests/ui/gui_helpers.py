"""Helpers for the GUI tests: open a window, real mouse and key events in image
coordinates, waiting for the engine's answer."""
from __future__ import annotations

WAIT_MS = 10_000    # generous: a loaded 2-core machine can be slow; a hang still fails


def open_window(qtbot, folder, factory, settings_path):
    from annotator.ui.app import run
    window = run(str(folder), session_factory=factory, settings_path=settings_path,
                 exec_loop=False)
    qtbot.addWidget(window)
    qtbot.waitExposed(window)
    return window


def click(qtbot, window, x: float, y: float, button=None, modifier=None):
    """A real mouse click on the canvas viewport at image point (x, y)."""
    from PySide6.QtCore import Qt
    canvas = window.canvas
    qtbot.mouseClick(canvas.viewport(), button or Qt.MouseButton.LeftButton,
                     modifier or Qt.KeyboardModifier.NoModifier, canvas.image_to_view(x, y))


def drag(qtbot, window, x0: float, y0: float, x1: float, y1: float):
    """A left drag on the canvas from image point (x0, y0) to (x1, y1)."""
    from PySide6.QtCore import Qt
    canvas = window.canvas
    viewport = canvas.viewport()
    a, b = canvas.image_to_view(x0, y0), canvas.image_to_view(x1, y1)
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=a)
    qtbot.mouseMove(viewport, (a + b) / 2)
    qtbot.mouseMove(viewport, b)
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=b)


def key(qtbot, window, k, modifier=None):
    """A key press + release on the canvas; shortcut events may be queued, so let Qt
    deliver them before the test looks at the result."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication
    qtbot.keyClick(window.canvas, k, modifier or Qt.KeyboardModifier.NoModifier, delay=1)
    QApplication.processEvents()


def wait_preview(qtbot, window):
    """Until the newest answer is in (and drawn, unless the engine found nothing)."""
    p = window.labeler.prompt
    qtbot.waitUntil(lambda: p.mask is not None and p.pending is None
                    and (window.canvas.preview_shown or not p.mask.any()), timeout=WAIT_MS)


def single_engine_factory(engine, name: str, cache_mb: float = 64):
    """A session factory that answers every point/box prompt with `engine` (no router),
    and text/auto prompts with the router's "not installed" message."""
    from annotator.core.session import EngineSession
    from engines.files.cache import EmbeddingCache
    from engines.router import NOT_INSTALLED_HINT, Routed
    from engines.types import EngineError

    def resolve(task, fine_edges):
        if task in NOT_INSTALLED_HINT:
            raise EngineError(NOT_INSTALLED_HINT[task])
        return Routed(engine, name, None)

    def factory(on_event):
        return EngineSession(resolve, EmbeddingCache(memory_mb=cache_mb, disk=False), on_event,
                             device="cpu")
    return factory
