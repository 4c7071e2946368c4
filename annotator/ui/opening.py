"""Opening folders and projects from inside the app: File ▸ Open folder… (Ctrl+O),
Open project file…, Recent, Close project, drag-and-drop, and the start page when
nothing is open.

The `Opener` owns the one top-level window. Opening something else *replaces* the
window: the new project is opened (and locked) first, so a bad path or a cancelled
"project in use" question leaves the current window as it was, with the reason in it;
only then does the old window shut down (its engines and its project, saving its
settings) and a new MainWindow take its place. Nothing here ever exits the program.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

from PySide6.QtCore import QEvent, QObject, QSettings, QUrl
from PySide6.QtWidgets import QFileDialog, QMainWindow

from annotator.core.errors import CoreError
from annotator.core.images import IMAGE_EXTENSIONS
from annotator.ui import app as app_module

RECENT_KEY, RECENT_MAX = "recent/projects", 10


# ---- the Recent list (QSettings) ----------------------------------------------------------

def recent(settings: QSettings) -> list[str]:
    value = settings.value(RECENT_KEY, [])
    items = value if isinstance(value, list) else [value] if value else []
    return [str(v) for v in items if str(v).strip()]


def add_recent(settings: QSettings, target: str | os.PathLike) -> None:
    path = str(Path(target).expanduser().resolve())
    items = [path] + [p for p in recent(settings) if p != path]
    settings.setValue(RECENT_KEY, items[:RECENT_MAX])
    settings.sync()


def clear_recent(settings: QSettings) -> None:
    settings.remove(RECENT_KEY)
    settings.sync()


def fill_recent_menu(menu, opener: "Opener") -> None:
    """The File ▸ Recent submenu, read again each time it is shown."""
    menu.clear()
    items = recent(opener.settings)
    for path in items:
        action = menu.addAction(path)
        action.setToolTip("this folder or project no longer exists" if not Path(path).exists()
                          else f"open {path}")
        action.triggered.connect(lambda _=False, p=path: opener.open(p))
    if not items:
        menu.addAction("(nothing opened yet)").setEnabled(False)
    menu.addSeparator()
    menu.addAction("Clear the list", lambda: clear_recent(opener.settings)).setEnabled(bool(items))


# ---- drag and drop -----------------------------------------------------------------------

def local_paths(mime) -> list[Path]:
    return [Path(url.toLocalFile()) for url in (mime.urls() if mime.hasUrls() else [])
            if url.isLocalFile()]


class DropFilter(QObject):
    """Accepts folders, image files and project files dropped on a window, or on one
    of `also` (widgets that would take drops themselves, like the canvas's viewport)."""

    def __init__(self, window: QMainWindow, on_drop: Callable[[list[Path]], Any],
                 also: Iterable[Any] = ()):
        super().__init__(window)
        self.on_drop = on_drop
        for widget in (window, *also):
            widget.setAcceptDrops(True)
            widget.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:
        kind = event.type()
        if kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove):
            if local_paths(event.mimeData()):
                event.acceptProposedAction()
                return True
        elif kind == QEvent.Type.Drop:
            paths = local_paths(event.mimeData())
            if paths:
                event.acceptProposedAction()
                self.on_drop(paths)
                return True
        return False


def file_urls(paths: Iterable[str | os.PathLike]) -> list[QUrl]:
    return [QUrl.fromLocalFile(str(Path(p).resolve())) for p in paths]


# ---- the opener ----------------------------------------------------------------------------

class Opener:
    """Opens targets into the app's one window (MainWindow, or the StartWindow when
    nothing is open) and remembers them in Recent."""

    def __init__(self, session_factory, settings: QSettings, *, models_dir: str | None = None,
                 on_in_use: Callable | None = None):
        self.session_factory = session_factory
        self.settings = settings
        self.models_dir = models_dir
        self._on_in_use = on_in_use
        self.window: QMainWindow | None = None
        self.opened_any = False

    def on_in_use(self, error) -> str:
        if self._on_in_use is not None:
            return self._on_in_use(error)
        from annotator.ui.project_in_use import ask_how_to_open
        return ask_how_to_open(error, self.window)

    # -- what the user asks for

    def open_folder_dialog(self) -> bool:
        start = str(self._current_folder() or Path.home())
        folder = QFileDialog.getExistingDirectory(self.window, "Open folder of images", start)
        return bool(folder) and self.open(folder)

    def open_project_dialog(self) -> bool:
        start = str(self._current_folder() or Path.home())
        path, _ = QFileDialog.getOpenFileName(
            self.window, "Open project file", start,
            f"Annotator projects (*{Path(app_module.PROJECT_FILE).suffix});;All files (*)")
        return bool(path) and self.open(path)

    def open_dropped(self, paths: list[Path]) -> bool:
        """A dropped folder or project file opens; dropped image files open their folder
        (and the first of them is shown)."""
        folders = [p for p in paths if p.is_dir()]
        if folders:
            return self.open(folders[0])
        images = [p for p in paths if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
        project = getattr(self.window, "project", None)
        if images and project is not None and _inside(images[0], project.image_root):
            show_file(self.window, images[0])     # already in this project's folder
            return True
        if images:
            return self.open(images[0].parent, show=images[0])
        files = [p for p in paths if p.is_file()]
        if files:
            return self.open(files[0])
        self.say(f"{paths[0]}: no such folder or file")
        return False

    def close_project(self) -> None:
        """File ▸ Close project: back to the start page."""
        self._replace(self._start_window(""))

    # -- opening

    def open(self, target: str | os.PathLike | None, *, show: Path | None = None) -> bool:
        """Open `target` into a new MainWindow replacing the current window; False (the
        reason shown in the current window, which stays) when it cannot be opened."""
        from annotator.ui.main_window import MainWindow
        current = getattr(self.window, "project", None)
        if current is not None and target is not None and self._same(target, current.path):
            self._show_in(self.window, show)
            self.say(f"{current.path.name} is already open")
            return True
        skipped: list[tuple[str, str]] = []
        try:
            project = app_module._open_asking(target, self.on_in_use, skipped)
        except CoreError as exc:
            self.fail(str(exc))
            return False
        if project is None:
            self.fail("the project is in use elsewhere; not opened")
            return False
        if self.window is not None and hasattr(self.window, "shutdown"):
            self.window.shutdown()          # engines and project of the old one, first
        window = MainWindow(project, self.session_factory, self.settings,
                            models_dir=self.models_dir)
        window.opener = self
        if not self.opened_any:                 # the command line's target: say it there too
            for name, why in skipped:
                print(f"annotator gui: skipped {name}: {why}", file=sys.stderr)
        self.opened_any = True
        add_recent(self.settings, target if target is not None else app_module.samples_folder())
        note_skipped(window, skipped)
        self._replace(window)
        self._show_in(window, show)
        return True

    def show_start(self, message: str = "") -> QMainWindow:
        """The start page (nothing open), with `message` (why, when something failed)."""
        self._replace(self._start_window(message))
        return self.window

    def fail(self, message: str) -> None:
        """Say why something did not open: on the start page, or in the open window."""
        if self.window is None:
            self.show_start(message)
        else:
            self.say(message)

    def say(self, message: str) -> None:
        window = self.window
        if hasattr(window, "start_page"):
            window.start_page.set_message(message)
        elif window is not None:
            window.statusBar().showMessage(message)

    # -- helpers

    def _start_window(self, message: str) -> QMainWindow:
        from annotator.ui.start_page import StartWindow
        return StartWindow(self, message)

    def _replace(self, window: QMainWindow) -> None:
        old, self.window = self.window, window
        window.show()
        if old is not None and old is not window:
            old.close()                       # MainWindow.closeEvent shuts it down
            old.deleteLater()

    @staticmethod
    def _show_in(window, image: Path | None) -> None:
        if image is not None and hasattr(window, "show_image"):
            show_file(window, image)

    @staticmethod
    def _same(target, project_path: Path) -> bool:
        path = Path(target).expanduser()
        try:
            mine = (app_module.project_path_for(path) if path.is_dir() else path).resolve()
            return mine == Path(project_path).resolve()
        except OSError:
            return False

    def _current_folder(self) -> Path | None:
        project = getattr(self.window, "project", None)
        return project.image_root if project is not None else None


# ---- the MainWindow's side ------------------------------------------------------------

def _inside(path: Path, root: Path) -> bool:
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
        return True
    except ValueError:
        return False


def show_file(window, path: Path) -> None:
    """Show the image at `path` (in the project's folder), adding it first if new."""
    project = window.project
    try:
        name = Path(path).resolve().relative_to(project.image_root.resolve()).as_posix()
    except ValueError:
        window.statusBar().showMessage(f"{Path(path).name} is not in {project.image_root}")
        return
    by_name = {rec.file_name: rec.id for rec in project.images()}
    if name not in by_name and not project.read_only:
        try:
            note_skipped(window, project.scan_folder().skipped)
        except CoreError as exc:
            window.statusBar().showMessage(str(exc))
            return
        window._flush()
        by_name = {rec.file_name: rec.id for rec in project.images()}
    if name in by_name:
        window.show_image(by_name[name])
    else:
        window.statusBar().showMessage(f"{name} could not be added to the project")


def empty_message(project) -> str:
    """What the canvas says when the project has no image to show."""
    return (f"No images in {project.image_root}\n\nDrop image files or a folder here, "
            "or use File ▸ Open folder… (Ctrl+O).\nImages: JPEG, PNG, TIFF, BMP or WebP.")


def note_skipped(window, skipped: list[tuple[str, str]]) -> None:
    """Files the folder scan could not add: said in the status bar, and in the canvas
    when nothing could be read at all."""
    if not skipped:
        return
    name, why = skipped[0]
    more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
    window.statusBar().showMessage(f"skipped {len(skipped)} file(s); {name}: {why}")
    if not window.images.image_ids:
        window.canvas.show_message(
            f"No image in {window.project.image_root} could be read.\n\n"
            f"{name}: {why}{more}.\n\nDrop other images or a folder here, or use "
            "File ▸ Open folder… (Ctrl+O).")


def opener_of(window) -> Opener:
    """The window's opener (one is made for a window built without the app's)."""
    if getattr(window, "opener", None) is None:
        opener = Opener(window.session_factory, window.settings, models_dir=window.models_dir)
        opener.window = window
        window.opener = opener
    return window.opener


def run_loop(qt_app) -> int:
    """The Qt event loop (a function of its own: tests of the command line replace it)."""
    return qt_app.exec()


def report(message: str) -> None:
    """The one line a command prints when it could not open its target."""
    print(f"annotator gui: error: {message}", file=sys.stderr)
