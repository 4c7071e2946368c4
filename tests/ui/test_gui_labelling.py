"""A whole labelling session through real widgets and real mouse/key events, once with the
classic engine (through the Router, no checkpoints) and once with a tiny SAM."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import Qt
from pycocotools.coco import COCO

from annotator.core.geometry import rle_to_mask
from annotator.ui.export_dialog import ExportDialog

from gui_helpers import WAIT_MS, click, drag, key, open_window, wait_preview


@pytest.fixture(params=["classic", "tiny-sam"])
def factory(request):
    return request.getfixturevalue("classic_factory" if request.param == "classic"
                                   else "tiny_sam_factory")


def accept_nonempty(qtbot, window):
    """Enter; a random-weight SAM may put an empty mask first, so Tab to a non-empty one."""
    for _ in range(len(window.labeler.prompt.prediction.masks)):
        if window.labeler.prompt.mask.any():
            break
        key(qtbot, window, Qt.Key.Key_Tab)
    assert window.labeler.prompt.mask.any(), "every candidate mask is empty"
    key(qtbot, window, Qt.Key.Key_Return)


def test_label_undo_switch_box_export(qtbot, image_folder, settings_path, factory, tmp_path):
    w = open_window(qtbot, image_folder, factory, settings_path)
    project = w.project
    first = w.image_id
    assert first == project.images()[0].id
    w.add_class("car")
    w.add_class("tree")
    assert [c.name for c in project.categories()] == ["car", "tree"]
    key(qtbot, w, Qt.Key.Key_2)                       # digit key picks a class
    assert w.classes.current.name == "tree"

    click(qtbot, w, 55, 45)                           # inside the object of img0
    wait_preview(qtbot, w)
    assert "sam" in w.engine_label.text() or "classic" in w.engine_label.text()
    assert "ms" in w.latency_label.text()
    accept_nonempty(qtbot, w)
    anns = project.annotations(first)
    assert len(anns) == 1
    ann = anns[0]
    assert project.category(ann.category_id).name == "tree"
    assert ann.engine in ("classic", "sam")
    points = [p for p in ann.prompts if p["type"] == "point"]
    assert len(points) == 1 and points[0]["label"] == 1
    assert abs(points[0]["x"] - 55) <= 1 and abs(points[0]["y"] - 45) <= 1
    assert w.labeler.prompt.is_empty and not w.canvas.preview_shown
    qtbot.waitUntil(lambda: w.canvas.instance_ids == [ann.id], timeout=WAIT_MS)
    qtbot.waitUntil(lambda: w.images._rows[first].text(1) == "1", timeout=WAIT_MS)
    assert w.images.state(first) == "ready"
    if ann.engine == "classic":        # a real segmentation: the object, not the field
        mask = rle_to_mask(ann.rle)
        assert mask[45, 55] and not mask[5, 5]
        assert mask[20:70, 30:80].mean() > 0.9

    # change class of the selected instance: select it, pick class 1, press C
    w.instances.select([ann.id])
    key(qtbot, w, Qt.Key.Key_1)
    key(qtbot, w, Qt.Key.Key_C)
    assert project.category(project.annotation(ann.id).category_id).name == "car"
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)     # undo the change
    assert project.category(project.annotation(ann.id).category_id).name == "tree"
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)     # undo the add
    assert project.annotations(first) == []
    qtbot.waitUntil(lambda: w.canvas.instance_ids == [], timeout=WAIT_MS)
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier
        | Qt.KeyboardModifier.ShiftModifier)                              # redo the add
    assert [a.id for a in project.annotations(first)] == [ann.id]
    qtbot.waitUntil(lambda: w.canvas.instance_ids == [ann.id], timeout=WAIT_MS)

    # next image (D) and back (A): the instance is drawn again
    key(qtbot, w, Qt.Key.Key_D)
    second = w.image_id
    assert second != first and w.canvas.instance_ids == []
    assert w.canvas.image_size == (96, 128)
    key(qtbot, w, Qt.Key.Key_A)
    assert w.image_id == first
    qtbot.waitUntil(lambda: w.canvas.instance_ids == [ann.id], timeout=WAIT_MS)
    assert w.canvas.instance_visible(ann.id)

    # a box on the second image
    key(qtbot, w, Qt.Key.Key_PageDown)
    assert w.image_id == second
    drag(qtbot, w, 55, 25, 115, 85)
    wait_preview(qtbot, w)
    box = w.labeler.prompt.box
    assert box is not None and abs(box[0] - 55) <= 1 and abs(box[3] - 85) <= 1
    accept_nonempty(qtbot, w)
    box_ann = project.annotations(second)[0]
    assert [p for p in box_ann.prompts if p["type"] == "box"]
    if box_ann.engine == "classic":
        assert rle_to_mask(box_ann.rle)[50, 85]

    # export COCO through the dialog's accept path; pycocotools reads it
    dialog = ExportDialog(project, w)
    dialog.format.setCurrentIndex(dialog.format.findData("coco"))
    out = tmp_path / "out" / "coco.json"
    dialog.out.setText(str(out))
    dialog.accept()
    assert dialog.written and out.exists()
    coco = COCO(str(out))
    assert len(coco.getAnnIds()) == 2
    names = sorted(coco.cats[a["category_id"]]["name"] for a in coco.anns.values())
    assert names == ["car", "tree"]      # the box went to the class picked last (1: car)
    doc = json.loads(out.read_text())
    assert {im["file_name"] for im in doc["images"]} == {"img0.png", "img1.png", "img2.png"}
    for a in coco.anns.values():
        assert coco.annToMask(a).sum() == pytest.approx(a["area"], abs=1)
    w.shutdown()


def test_negative_point_candidates_escape(qtbot, image_folder, settings_path, factory):
    w = open_window(qtbot, image_folder, factory, settings_path)
    click(qtbot, w, 55, 45)
    wait_preview(qtbot, w)
    first_answer = w.labeler.prompt.prediction
    click(qtbot, w, 10, 10, Qt.MouseButton.RightButton)          # background point
    qtbot.waitUntil(lambda: w.labeler.prompt.prediction is not first_answer
                    and w.labeler.prompt.pending is None, timeout=WAIT_MS)
    assert w.labeler.prompt.labels == [1, 0]
    click(qtbot, w, 120, 90, modifier=Qt.KeyboardModifier.ShiftModifier)  # Shift: background
    assert w.labeler.prompt.labels == [1, 0, 0]
    qtbot.waitUntil(lambda: w.labeler.prompt.pending is None, timeout=WAIT_MS)
    # the second request carried the first answer's logits as its prior
    prompt = w.labeler.prompt.to_prompt()
    assert prompt.mask_logits is not None and prompt.mask_logits.shape[0] == 1
    n = len(w.labeler.prompt.prediction.masks)
    key(qtbot, w, Qt.Key.Key_Tab)
    assert w.labeler.prompt.candidate == (1 % n if n > 1 else 0)
    key(qtbot, w, Qt.Key.Key_Escape)
    assert w.labeler.prompt.is_empty and not w.canvas.preview_shown
    key(qtbot, w, Qt.Key.Key_Return)                              # nothing to accept
    assert w.project.annotations() == []
    w.shutdown()


def test_merge_and_split_selected_instances(qtbot, image_folder, settings_path):
    w = open_window(qtbot, image_folder, None, settings_path)
    image = w.image_id
    cat = w.add_class("thing")
    left, right = np.zeros((96, 128), bool), np.zeros((96, 128), bool)
    left[20:70, 30:50], right[20:70, 60:80] = True, True
    a = w.project.add_annotation(image, cat, left).id     # as if accepted earlier
    b = w.project.add_annotation(image, cat, right).id
    qtbot.waitUntil(lambda: sorted(w.canvas.instance_ids) == [a, b], timeout=WAIT_MS)
    w.instances.select([a, b])
    key(qtbot, w, Qt.Key.Key_M)
    (merged,) = w.project.annotations(image)
    assert merged.id == a and (rle_to_mask(merged.rle) == (left | right)).all()
    qtbot.waitUntil(lambda: w.canvas.instance_ids == [a], timeout=WAIT_MS)
    w.instances.select([a])
    key(qtbot, w, Qt.Key.Key_K)                           # split into connected parts
    parts = w.project.annotations(image)
    assert len(parts) == 2 and parts[0].id == a
    assert sorted(int(rle_to_mask(p.rle).sum()) for p in parts) == [1000, 1000]
    key(qtbot, w, Qt.Key.Key_K)                           # one part (a still selected)
    assert "nothing to split" in w.statusBar().currentMessage()
    assert len(w.project.annotations(image)) == 2
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert sorted(x.id for x in w.project.annotations(image)) == [a, b]
    w.shutdown()


def test_brush_and_eraser_edit_the_selected_instance(qtbot, image_folder, settings_path):
    w = open_window(qtbot, image_folder, None, settings_path)
    image = w.image_id
    cat = w.add_class("thing")
    square = np.zeros((96, 128), bool)
    square[20:60, 20:60] = True
    ann = w.project.add_annotation(image, cat, square).id
    qtbot.waitUntil(lambda: w.canvas.instance_ids == [ann], timeout=WAIT_MS)
    drag(qtbot, w, 70, 35, 100, 45)               # no selection, prompt mode: a box prompt
    assert w.labeler.prompt.box is not None
    key(qtbot, w, Qt.Key.Key_B)
    assert w.canvas.mode == "brush" and w.labeler.prompt.is_empty
    drag(qtbot, w, 70, 40, 100, 40)               # nothing selected: refused, nothing changes
    assert "select exactly one instance" in w.statusBar().currentMessage()
    assert (rle_to_mask(w.project.annotation(ann).rle) == square).all()
    w.instances.select([ann])
    drag(qtbot, w, 70, 40, 100, 40)               # paint a stroke to the right
    grown = rle_to_mask(w.project.annotation(ann).rle)
    r = w.brush.radius
    assert grown[40, 85] and grown[40 - r + 1, 100] and not grown[40 + r + 2, 85]
    assert (grown & square).sum() == square.sum()
    key(qtbot, w, Qt.Key.Key_E)                   # eraser through the middle of the square
    assert w.canvas.mode == "eraser"
    drag(qtbot, w, 40, 10, 40, 70)
    cut = rle_to_mask(w.project.annotation(ann).rle)
    assert not cut[40, 40] and cut[40, 25] and cut[40, 85]
    key(qtbot, w, Qt.Key.Key_Escape)              # back to prompts
    assert w.canvas.mode == "prompt"
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert (rle_to_mask(w.project.annotation(ann).rle) == grown).all()
    key(qtbot, w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert (rle_to_mask(w.project.annotation(ann).rle) == square).all()
    w.shutdown()
