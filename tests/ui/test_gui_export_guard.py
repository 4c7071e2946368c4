"""The window's export follows the export guard (issue 19, item 1): the project and its
images are refused outright, a user's file only after the user says yes."""
from __future__ import annotations

from PySide6.QtWidgets import QMessageBox

from annotator.ui import app
from annotator.ui.export_dialog import ExportDialog


def test_a_users_file_is_replaced_only_after_asking(qtbot, image_folder, tmp_path,
                                                    monkeypatch):
    asked, warned = [], []
    answer = [QMessageBox.StandardButton.No]
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: asked.append(a[2]) or answer[0])
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: warned.append(a[2]))
    mine = tmp_path / "mine.json"
    mine.write_text("my notes")
    with app.open_target(image_folder) as project:
        dialog = ExportDialog(project)
        qtbot.addWidget(dialog)
        dialog.out.setText(str(mine))
        dialog.accept()                                   # "No": nothing written
        assert asked and "mine.json" in asked[0] and mine.read_text() == "my notes"
        assert dialog.result() == 0 and not dialog.written
        answer[0] = QMessageBox.StandardButton.Yes
        dialog.accept()
        assert dialog.written == [mine] and mine.read_text().startswith("{")
        asked.clear()
        dialog.out.setText(str(project.path))             # never, and not even asked
        dialog.accept()
        assert not asked and warned and "is the project file" in warned[-1]
        assert project.images()                           # still a project
