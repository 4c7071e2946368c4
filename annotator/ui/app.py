"""Starting the GUI: open a folder or a project, build the window, run the Qt loop.

The engines are handed in as a `session_factory(on_event) -> session` (see
`annotator.core.session.build_session`): this package never imports torch, so the
composition happens in `annotator.commands.gui`. Without a factory the window still opens
for reviewing and editing, and says that no engine is running.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import Sequence

from annotator.core.errors import ProjectError
from annotator.core.store import Project

PROJECT_FILE = "annotations.sqlite"


def samples_folder() -> Path:
    """The example images shipped with the program."""
    import resources
    return Path(resources.__file__).resolve().parent / "samples"


def _data_dir() -> Path:
    override = os.environ.get("ANNOTATOR_DATA_DIR", "").strip()
    if override:
        return Path(override).expanduser()
    import platformdirs
    return Path(platformdirs.user_data_dir("sam-annotator"))


def project_path_for(folder: Path) -> Path:
    """Where a folder's project file lives: inside the folder, unless the folder is the
    bundled samples or not writable (then in the user's data folder, one per folder)."""
    folder = folder.resolve()
    inside = folder / PROJECT_FILE
    if inside.exists():
        return inside
    if folder != samples_folder() and os.access(folder, os.W_OK):
        return inside
    digest = hashlib.sha1(str(folder).encode()).hexdigest()[:12]
    return _data_dir() / "projects" / f"{folder.name}-{digest}" / PROJECT_FILE


def open_target(target: str | os.PathLike | None, *, read_only: bool = False,
                take_over: bool = False, skipped: list | None = None) -> Project:
    """A folder of images (its project is created or opened, and new images are added;
    files that cannot be added go to `skipped` as (name, why)) or a project file.
    ProjectError names the path and the problem; ProjectInUseError when another
    window holds it (then ask, and call again with `read_only` or `take_over`)."""
    path = Path(target) if target is not None else samples_folder()
    if path.is_dir():
        project_file = project_path_for(path)
        if project_file.exists():
            project = Project.open(project_file, read_only=read_only, take_over=take_over)
        else:
            project_file.parent.mkdir(parents=True, exist_ok=True)
            project = Project.create(project_file, path)
        if project.read_only:
            return project        # new images are added by the window that writes
        try:
            report = project.scan_folder()
        except BaseException:
            project.close()
            raise
        if skipped is not None:
            skipped.extend(report.skipped)
        return project
    if path.is_file():
        return Project.open(path, read_only=read_only, take_over=take_over)
    raise ProjectError(f"{path}: no such folder or project file")


def _open_asking(target, on_in_use, skipped: list) -> Project | None:
    """open_target, asking `on_in_use(error)` what to do when another window has the
    project; None when the user cancels."""
    from annotator.core.project_lock import ProjectInUseError
    from annotator.ui.project_in_use import READ_ONLY, TAKE_OVER
    try:
        return open_target(target, skipped=skipped)
    except ProjectInUseError as exc:
        choice = on_in_use(exc)
    if choice not in (READ_ONLY, TAKE_OVER):
        return None
    return open_target(target, read_only=choice == READ_ONLY, take_over=choice == TAKE_OVER,
                       skipped=skipped)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="annotator gui", description="Open the annotation "
                                     "window on a folder of images or a project file.")
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", metavar="FOLDER_OR_PROJECT",
                        help="folder of images or project file (default: the bundled samples)")
    parser.add_argument("--settings", type=Path, metavar="INI",
                        help="keep window and tool settings in this ini file")


def run(target, *, session_factory=None, settings_path=None, exec_loop: bool = True,
        models_dir: str | None = None, on_in_use=None):
    """Open `target` and show the window; with `exec_loop`, run Qt until it closes and
    return the exit code, else return the window (tests drive it). `models_dir` is where
    the model picker looks and downloads (None: $ANNOTATOR_MODELS_DIR or the default).
    `on_in_use(error) -> "read-only" | "take-over" | "cancel"` decides what to do with a
    project another window has open (default: ask with ProjectInUseDialog).

    A target that cannot be opened (or a cancelled question) never ends the program: the
    start page opens with the reason, which is also printed as one line on stderr, and
    the exit status is 2 when nothing was ever opened before the window closed."""
    from PySide6.QtWidgets import QApplication

    from annotator.ui.opening import Opener, report, run_loop
    from annotator.ui.settings import open_settings

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("annotator")
    app.setOrganizationName("sam-annotator")
    opener = Opener(session_factory, open_settings(settings_path), models_dir=models_dir,
                    on_in_use=on_in_use)
    if not opener.open(target):
        report(opener.window.start_page.message.text())
    window = opener.window
    if not exec_loop:
        return window
    code = run_loop(app)
    return code if opener.opened_any else 2


def main(argv: Sequence[str] | None = None, *, session_factory=None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    return int(run(args.target, session_factory=session_factory, settings_path=args.settings))
