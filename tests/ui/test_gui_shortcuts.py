"""Discoverability (issue 20): Help ▸ Keyboard shortcuts (F1, ?) lists every key the
window binds, from the same action table; the README's table of keys agrees with that
table; tooltips in plain words; a plain click on an accepted instance selects it when
no prompt is live (candidates first, else the smallest instance under the cursor)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QWidget

from annotator.core import commands as cmd
from annotator.core.dataset import CandidateRecord
from annotator.core.geometry import mask_to_rle
from annotator.ui.actions import ACTIONS, key_name, key_names
from annotator.ui.shortcuts import ShortcutSheet

from gui_helpers import click, key, open_window

README = Path(__file__).resolve().parents[2] / "README.md"
CTRL = Qt.KeyboardModifier.ControlModifier


def sheet_of(w) -> ShortcutSheet:
    sheet = w.shortcut_sheet
    assert sheet.isVisible()
    return sheet


def test_f1_and_question_mark_open_a_sheet_of_every_bound_key(qtbot, image_folder,
                                                              settings_path):
    w = open_window(qtbot, image_folder, None, settings_path)
    key(qtbot, w, Qt.Key.Key_F1)
    sheet = sheet_of(w)
    sheet.close()
    w.activateWindow()                   # what the window manager does when it closes
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w)
    key(qtbot, w, Qt.Key.Key_Question)
    sheet = sheet_of(w)
    # every action with a key on the window comes from the table, and is on the sheet
    from_table = {id(action) for _, action in w.bound_actions}
    listed = {(row[1], k) for row in sheet.rows for k in row[0].split(" / ")}
    bound = [a for a in w.actions() if a.shortcuts()]
    assert len(bound) >= 45
    for action in bound:
        assert id(action) in from_table, f"{action.text()!r} is bound outside actions.ACTIONS"
        act = next(act for act, a in w.bound_actions if a is action)
        for seq in action.shortcuts():
            assert (act.text, key_name(seq)) in listed, (act.text, seq.toString())
    for review_key in ("G", "Shift+Enter", "Shift+Delete", "Shift+N", "Tab", "Shift+Tab"):
        assert any(review_key in row[0].split(" / ") for row in sheet.rows), review_key
    assert any(row[2] == "mouse" and "Ctrl+click" in row[0] for row in sheet.rows)

    qtbot.keyClicks(sheet.search, "undo")                   # searchable, by word or key
    assert [r[0] for r in sheet.visible_rows()] == ["Ctrl+Z"]
    sheet.search.clear()
    qtbot.keyClicks(sheet.search, "shift+n")
    assert [r[1] for r in sheet.visible_rows()] == ["Next image with pending candidates"]
    sheet.close()
    w.shutdown()


def readme_keys_column() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## The annotation window", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return "\n".join(line.split(" | ")[0] for line in rows[1:])


def test_the_readme_key_table_lists_every_key_of_the_action_table():
    column = readme_keys_column()
    missing = []
    for act in ACTIONS:
        for name in key_names(act):
            forms = [name] + (["1-9"] if name.isdigit() else [])
            if not any(re.search(rf"(?<![\w+]){re.escape(f)}(?![\w+])", column) for f in forms):
                missing.append(f"{name} ({act.text})")
    assert not missing, f"README.md's key table lacks: {missing}"


def test_toolbar_tooltips_are_plain_words(qtbot, image_folder, settings_path):
    w = open_window(qtbot, image_folder, None, settings_path)
    tips = [wd.toolTip() for wd in w.toolbar.findChildren(QWidget) if wd.toolTip()]
    assert w.detail.toolTip() in tips and w.detail.slider.toolTip() == w.detail.toolTip()
    for tip in tips:
        for jargon in ("Douglas", "Peucker", "logit", "RLE", "tolerance"):
            assert jargon not in tip, (jargon, tip)
    assert "handles" in w.detail.toolTip() and "never changes the mask" in w.detail.toolTip()
    w.shutdown()


def square(w, x0, y0, x1, y1):
    h, wd = w.canvas.image_size
    m = np.zeros((h, wd), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_a_plain_click_selects_an_instance_smallest_first_and_again_prompts(
        qtbot, image_folder, settings_path):
    w = open_window(qtbot, image_folder, None, settings_path)
    cat = w.add_class("thing")
    small = w._push(cmd.AddAnnotation(w.image_id, cat, square(w, 40, 30, 60, 50))).annotation_id
    big = w._push(cmd.AddAnnotation(w.image_id, cat, square(w, 10, 10, 110, 80))).annotation_id
    qtbot.waitUntil(lambda: sorted(w.canvas.instance_ids) == sorted([small, big]))
    click(qtbot, w, 50, 40)                  # inside both: the small one, drawn under
    assert w.instances.selected_ids == [small] and w.labeler.prompt.is_empty
    assert "click it again" in w.statusBar().currentMessage()
    click(qtbot, w, 20, 20)                  # only the big one
    assert w.instances.selected_ids == [big] and w.labeler.prompt.is_empty
    click(qtbot, w, 20, 20)                  # the selected one again: a prompt point
    assert len(w.labeler.prompt.points) == 1
    click(qtbot, w, 50, 40)                  # a prompt is live: clicks are points
    assert len(w.labeler.prompt.points) == 2 and w.instances.selected_ids == [big]
    key(qtbot, w, Qt.Key.Key_Escape)
    click(qtbot, w, 120, 90, modifier=CTRL)  # Ctrl+click on nothing: no selection
    assert w.instances.selected_ids == [] and w.labeler.prompt.is_empty
    click(qtbot, w, 50, 40, modifier=CTRL)   # Ctrl+click: the same rule
    assert w.instances.selected_ids == [small]
    w.instances.set_visible(big, False)      # a hidden instance is not clicked on
    click(qtbot, w, 20, 20)
    assert len(w.labeler.prompt.points) == 1
    w.shutdown()


def test_a_candidate_under_the_click_comes_before_an_instance(qtbot, image_folder,
                                                              settings_path):
    w = open_window(qtbot, image_folder, None, settings_path)
    cat = w.add_class("thing")
    ann = w._push(cmd.AddAnnotation(w.image_id, cat, square(w, 10, 10, 110, 80))).annotation_id
    (cand,) = w.project.add_candidates(w.image_id, [CandidateRecord(
        id=0, image_id=w.image_id, rle=mask_to_rle(square(w, 20, 20, 100, 70)), score=0.9,
        engine="test")])
    w._flush()
    QApplication.processEvents()
    qtbot.waitUntil(lambda: w.canvas.candidates is not None
                    and bool(w.canvas.candidates.entries))
    click(qtbot, w, 50, 40)
    assert w.review.selected == cand.id and w.instances.selected_ids == []
    click(qtbot, w, 15, 15)                  # outside the candidate: the instance
    assert w.instances.selected_ids == [ann] and w.review.selected is None
    w.shutdown()
