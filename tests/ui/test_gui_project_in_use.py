"""A second window on a project another window has open (issue 19, item 4): the
read-only / take over / cancel question, and what each answer gives. Also: a folder
whose image is a symlink out of the folder (item 6) is refused with its name."""
from __future__ import annotations

import os

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from annotator.core.project_lock import LockLostError, ProjectInUseError
from annotator.ui import app
from annotator.ui.project_in_use import (CANCEL, READ_ONLY, TAKE_OVER, ProjectInUseDialog,
                                         ask_how_to_open)


@pytest.fixture()
def held(image_folder):
    """The folder's project, open for writing as another window would have it."""
    project = app.open_target(image_folder)
    yield project
    project.close()


def in_use_error(held) -> ProjectInUseError:
    with pytest.raises(ProjectInUseError) as info:
        app.open_target(held.path)
    return info.value


def test_the_dialog_says_who_has_the_project_and_offers_three_answers(qtbot, held):
    error = in_use_error(held)
    dialog = ProjectInUseDialog(error)
    qtbot.addWidget(dialog)
    assert f"process {os.getpid()}" in dialog.text() and held.path.name in dialog.text()
    assert "read-only" in dialog.informativeText()
    assert [b.text() for b in (dialog.read_only_button, dialog.take_over_button)] == \
        ["Open read-only", "Take over"]
    assert dialog.choice == CANCEL                   # closed without an answer


@pytest.mark.parametrize("button, choice", [("read_only_button", READ_ONLY),
                                            ("take_over_button", TAKE_OVER),
                                            ("cancel_button", CANCEL)])
def test_clicking_a_button_gives_its_answer(qtbot, held, button, choice):
    error = in_use_error(held)

    def click_when_shown():
        dialog = next(w for w in QApplication.topLevelWidgets()
                      if isinstance(w, ProjectInUseDialog) and w.isVisible())
        getattr(dialog, button).click()

    QTimer.singleShot(50, click_when_shown)      # exec() below blocks until the click
    assert ask_how_to_open(error) == choice


def test_read_only_window_shows_the_project_and_saves_nothing(qtbot, held, image_folder,
                                                             settings_path):
    held.add_category("theirs")
    window = app.run(str(image_folder), settings_path=settings_path, exec_loop=False,
                     on_in_use=lambda error: READ_ONLY)
    qtbot.addWidget(window)
    assert window.project.read_only and window.windowTitle().endswith("(read-only)")
    assert [c.name for c in window.project.categories()] == ["theirs"]
    window.add_class("mine")                         # refused, with a message
    assert "read-only" in window.statusBar().currentMessage()
    assert [c.name for c in held.categories()] == ["theirs"]
    held.add_category("still theirs")                # the writer keeps writing
    window.shutdown()


def test_take_over_moves_the_lock_and_the_old_window_is_refused(qtbot, held, image_folder,
                                                                settings_path):
    window = app.run(str(image_folder), settings_path=settings_path, exec_loop=False,
                     on_in_use=lambda error: TAKE_OVER)
    qtbot.addWidget(window)
    assert not window.project.read_only
    window.add_class("new owner")
    with pytest.raises(LockLostError, match="taken over"):
        held.add_category("old owner")
    assert [c.name for c in window.project.categories()] == ["new owner"]
    window.shutdown()


def test_cancel_opens_nothing_and_shows_the_start_page(qtbot, held, image_folder,
                                                        settings_path):
    window = app.run(str(image_folder), settings_path=settings_path, exec_loop=False,
                     on_in_use=lambda error: CANCEL)
    qtbot.addWidget(window)
    assert not hasattr(window, "project")                # nothing opened: the start page
    assert "in use elsewhere" in window.start_page.message.text()
    window.close()


def test_a_folder_image_that_leads_outside_the_folder_is_refused_by_name(tmp_path,
                                                                        image_folder):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.png").write_bytes((image_folder / "img0.png").read_bytes())
    (image_folder / "escape.png").symlink_to(outside / "secret.png")
    skipped: list = []
    with app.open_target(image_folder, skipped=skipped) as project:
        names = [img.file_name for img in project.images()]
    assert "escape.png" not in names and len(names) == 3
    assert skipped and skipped[0][0] == "escape.png"
    assert "leads outside the image root" in skipped[0][1]
