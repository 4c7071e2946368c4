"""Opening things from inside the app (issue 20): File ▸ Open folder… (Ctrl+O), Open
project file…, Recent, drag-and-drop of a folder or image files, the start page when
nothing is open, the canvas's message for an empty or unreadable folder, and a bad path
on the command line opening the start page with the reason instead of exiting."""
from __future__ import annotations

import shutil

from PySide6.QtCore import QMimeData, QPointF, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QFileDialog

from annotator.ui import app
from annotator.ui.opening import file_urls, recent
from annotator.ui.settings import open_settings
from annotator.ui.start_page import StartWindow



def second_folder(image_folder):
    other = image_folder.parent / "other"
    other.mkdir()
    for name in ("b0.png", "b1.png"):
        shutil.copy(image_folder / "img0.png", other / name)
    return other


def open_window(qtbot, folder, factory, settings_path):
    """gui_helpers.open_window without qtbot.addWidget: a window that opening replaces
    is deleted (deleteLater), which qtbot's own closing at teardown would trip on."""
    w = app.run(str(folder), session_factory=factory, settings_path=settings_path,
                exec_loop=False)
    qtbot.waitExposed(w)
    return w


def current(w):
    return w.opener.window


def menu_action(w, menu, text, keys):
    """The menu entry, checked to carry its key (triggered as a menu click does: a key
    event would still be on its way to the window this replaces)."""
    action = next(a for a in w.menus[menu].actions() if a.text() == text)
    assert action.shortcut().toString() == keys
    return action


def still_lockable(project_path) -> bool:
    """The old window let its project go: it opens for writing again here."""
    with app.Project.open(project_path):
        return True


def drop(widget, paths):
    mime = QMimeData()
    mime.setUrls(file_urls(paths))
    pos = QPointF(widget.rect().center())
    action = Qt.DropAction.CopyAction
    enter = QDragEnterEvent(pos.toPoint(), action, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    event = QDropEvent(pos, action, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)
    QApplication.processEvents()
    return event


def test_ctrl_o_opens_another_folder_and_closes_the_old_project(qtbot, image_folder,
                                                                settings_path, monkeypatch):
    other = second_folder(image_folder)
    w = open_window(qtbot, image_folder, None, settings_path)
    old_path = w.project.path
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(other))
    menu_action(w, "File", "Open folder…", "Ctrl+O").trigger()
    new = current(w)
    assert new is not w and new.project.image_root == other.resolve()
    assert [i.file_name for i in new.project.images()] == ["b0.png", "b1.png"]
    assert w._closed and still_lockable(old_path)          # engines and project shut down
    assert recent(open_settings(settings_path))[:2] == [str(other.resolve()),
                                                        str(image_folder.resolve())]
    new.close()


def test_open_project_file_by_menu_and_reopening_the_same_one_keeps_the_window(
        qtbot, image_folder, settings_path, monkeypatch):
    other = second_folder(image_folder)
    with app.open_target(other):
        pass
    w = open_window(qtbot, image_folder, None, settings_path)
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        lambda *a, **k: (str(other / app.PROJECT_FILE), ""))
    menu_action(w, "File", "Open project file…", "Ctrl+Shift+O").trigger()
    new = current(w)
    assert new.project.path.resolve() == (other / app.PROJECT_FILE).resolve()
    assert new.opener.open(other) and current(w) is new        # already open: same window
    assert "already open" in new.statusBar().currentMessage()
    new.close()


def test_a_dropped_folder_or_image_file_opens(qtbot, image_folder, settings_path):
    other = second_folder(image_folder)
    w = open_window(qtbot, image_folder, None, settings_path)
    drop(w.canvas.viewport(), [other])                     # onto the canvas: passed up
    new = current(w)
    assert new is not w and new.project.image_root == other.resolve()
    drop(new, [image_folder / "img2.png"])                 # an image: its folder, that image
    newer = current(w)
    assert newer.project.image_root == image_folder.resolve()
    assert newer.project.image(newer.image_id).file_name == "img2.png"
    shutil.copy(image_folder / "img0.png", image_folder / "new.png")
    drop(newer, [image_folder / "new.png"])                # in this folder: added and shown
    assert current(w) is newer
    assert newer.project.image(newer.image_id).file_name == "new.png"
    newer.close()


def test_recent_menu_opens_a_recent_project(qtbot, image_folder, settings_path):
    other = second_folder(image_folder)
    w = open_window(qtbot, image_folder, None, settings_path)
    w.opener.open(other)
    new = current(w)
    menu = new.recent_menu
    menu.aboutToShow.emit()
    entries = {a.text(): a for a in menu.actions() if a.text()}
    assert str(image_folder.resolve()) in entries and "Clear the list" in entries
    entries[str(image_folder.resolve())].trigger()
    back = current(w)
    assert back is not new and back.project.image_root == image_folder.resolve()
    back.close()


def test_a_bad_path_opens_the_start_page_with_the_reason(qtbot, tmp_path, settings_path,
                                                         capsys, monkeypatch, image_folder):
    w = app.run(str(tmp_path / "nowhere"), settings_path=settings_path, exec_loop=False)
    assert isinstance(w, StartWindow)
    assert "no such folder or project file" in w.start_page.message.text()
    assert "nowhere" in capsys.readouterr().err
    assert "Models go in" in w.start_page.models.text()
    assert "Open folder…" in [a.text() for a in w.menus["File"].actions()]
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(image_folder))
    qtbot.mouseClick(w.start_page.open_folder_button, Qt.MouseButton.LeftButton)
    opened = w.opener.window
    assert opened.project.image_root == image_folder.resolve()
    menu_action(opened, "File", "Close project", "Ctrl+W").trigger()   # to the start page
    start = opened.opener.window
    assert isinstance(start, StartWindow) and opened._closed
    assert start.start_page.recent.item(0).text() == str(image_folder.resolve())
    start.start_page.recent.itemActivated.emit(start.start_page.recent.item(0))
    assert start.opener.window.project.image_root == image_folder.resolve()
    start.opener.window.close()


def test_a_drop_on_the_start_page_opens_the_folder(qtbot, tmp_path, settings_path,
                                                   image_folder):
    w = app.run(str(tmp_path / "nowhere"), settings_path=settings_path, exec_loop=False)
    drop(w.start_page.recent.viewport(), [image_folder])
    assert w.opener.window.project.image_root == image_folder.resolve()
    w.opener.window.close()


def test_an_empty_folder_and_a_folder_of_unreadable_files_say_so_in_the_canvas(
        qtbot, tmp_path, settings_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    w = open_window(qtbot, empty, None, settings_path)
    assert "No images in" in w.canvas.message and w.image_id is None
    w.close()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png at all")
    (broken / "b.jpg").write_bytes(b"\xff\xd8 truncated")
    w = open_window(qtbot, broken, None, settings_path)
    assert "could be read" in w.canvas.message and "a.png" in w.canvas.message
    assert "skipped 2 file(s)" in w.statusBar().currentMessage()
    w.close()


def test_the_gui_command_never_exits_on_a_bad_path(monkeypatch, tmp_path, capsys):
    from annotator.cli import main
    shown, earlier = [], set(map(id, QApplication.topLevelWidgets()))
    monkeypatch.setattr("annotator.ui.opening.run_loop", lambda qt_app: shown.extend(
        w for w in QApplication.topLevelWidgets() if id(w) not in earlier) or 0)
    monkeypatch.setenv("ANNOTATOR_MODELS_DIR", str(tmp_path / "models"))
    code = main(["gui", str(tmp_path / "nowhere"), "--settings", str(tmp_path / "s.ini")])
    assert code == 2                         # nothing was opened before the window closed
    starts = [w for w in shown if isinstance(w, StartWindow) and w.isVisible()]
    assert starts and "no such folder" in starts[-1].start_page.message.text()
    assert capsys.readouterr().err.count("\n") == 1
    for w in starts:
        w.close()

