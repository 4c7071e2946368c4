"""Undo/redo commands: every do/undo/redo returns the store to the exact earlier state."""
from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mu

from annotator.core.commands import (AddAnnotation, AddCategory, ChangeCategory, CommandStack,
                                     DeleteAnnotation, EditMask, Merge, RecolorCategory,
                                     RenameCategory, Reorder, Split)
from annotator.core.errors import ProjectError
from annotator.core.store import Project

H, W = 24, 32


def dump(project: Project) -> dict:
    """Every row of every table (the id counter excluded: ids are never reused, so an
    undone add still used up its id), through a separate connection."""
    conn = sqlite3.connect(project.path)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name <> 'sqlite_sequence'")]
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}
    finally:
        conn.close()


def rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture()
def project(tmp_path: Path):
    root = tmp_path / "images"
    root.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (W, H)).save(root / name)
    with Project.create(tmp_path / "p.annot", root) as p:
        p.add_images(["a.png", "b.png"])
        p.add_category("cat")
        p.add_category("dog")
        for i in range(3):
            p.add_annotation(1, 1, rect(i, i + 4, 2 * i, 2 * i + 5), score=0.8, engine="sam",
                             prompts=[{"points": [[i, i]], "labels": [1]}])
        yield p


def check_do_undo_redo(project: Project, command) -> CommandStack:
    stack = CommandStack(project)
    before = dump(project)
    stack.push(command)
    after = dump(project)
    assert after != before
    stack.undo()
    assert dump(project) == before
    stack.redo()
    assert dump(project) == after
    stack.undo()
    assert dump(project) == before
    stack.redo()
    return stack


def test_add_annotation(project):
    cmd = AddAnnotation(2, 2, rect(0, 5, 0, 5), engine="hq-sam", prompts=[{"box": [0, 0, 5, 5]}])
    check_do_undo_redo(project, cmd)
    assert project.annotation(cmd.annotation_id).engine == "hq-sam"   # redo: same id


def test_delete_restores_same_id_and_draw_order(project):
    stack = CommandStack(project)
    stack.push(DeleteAnnotation(2))
    assert [a.id for a in project.annotations(1)] == [1, 3]
    stack.undo()
    assert [a.id for a in project.annotations(1)] == [1, 2, 3]
    check_do_undo_redo(project, DeleteAnnotation([3, 1]))
    assert project.annotations(1) == [project.annotation(2)]


def test_edit_mask_and_change_category(project):
    check_do_undo_redo(project, EditMask(1, rect(10, 20, 10, 20), engine="brush"))
    assert project.annotation(1).engine == "brush"
    check_do_undo_redo(project, ChangeCategory([1, 3], 2))
    assert [a.category_id for a in project.annotations(1)] == [2, 1, 2]


def test_merge_and_undo_restores_every_original(project):
    originals = project.annotations(1)
    stack = check_do_undo_redo(project, Merge([2, 1, 3]))
    merged, = project.annotations(1)
    assert merged.id == 2 and merged.score is None and merged.order == 1
    union = rect(0, 4, 0, 5) | rect(1, 5, 2, 7) | rect(2, 6, 4, 9)
    assert project._conn.execute("SELECT area FROM annotations").fetchone()[0] == union.sum()
    stack.undo()
    assert project.annotations(1) == originals


def test_merge_refuses_across_images_or_alone(project):
    project.add_annotation(2, 1, rect(0, 2, 0, 2))
    stack = CommandStack(project)
    before = dump(project)
    with pytest.raises(ProjectError, match="different images"):
        stack.push(Merge([1, 4]))
    with pytest.raises(ProjectError, match="at least two"):
        stack.push(Merge([1, 1]))
    assert dump(project) == before and not stack.can_undo


def test_split_into_connected_parts(project):
    two = rect(0, 3, 0, 3) | rect(10, 20, 10, 20)
    project.update_mask(3, two)
    cmd = Split(3)
    check_do_undo_redo(project, cmd)
    assert len(cmd.new_ids) == 1 and cmd.description == "Split annotation into 2"
    big, small = project.annotation(3), project.annotation(cmd.new_ids[0])
    assert big.rle["size"] == [H, W] and small.category_id == big.category_id
    assert project._conn.execute("SELECT area FROM annotations WHERE id = ?",
                                 (3,)).fetchone()[0] == 100      # the largest part kept the id


def test_split_with_given_masks_and_refusals(project):
    check_do_undo_redo(project, Split(1, [rect(0, 2, 0, 5), rect(2, 4, 0, 5), rect(0, 1, 9, 10)]))
    stack = CommandStack(project)
    before = dump(project)
    with pytest.raises(ProjectError, match="1 part; nothing to split"):
        stack.push(Split(2))
    with pytest.raises(ProjectError, match="mask is empty"):
        stack.push(Split(2, [rect(0, 1, 0, 1), np.zeros((H, W), bool)]))
    assert dump(project) == before and not stack.can_undo


def test_reorder(project):
    check_do_undo_redo(project, Reorder(1, [3, 1, 2]))
    assert [a.id for a in project.annotations(1)] == [3, 1, 2]


def test_category_commands(project):
    cmd = AddCategory("bird", "#123456")
    check_do_undo_redo(project, cmd)
    assert project.category(cmd.category_id).name == "bird"
    check_do_undo_redo(project, RenameCategory(1, "kitten"))
    check_do_undo_redo(project, RecolorCategory(2, "#ff00ff"))


def test_stack_texts_listeners_and_redo_cleared_by_push(project):
    stack = CommandStack(project)
    calls = []
    stack.add_listener(lambda: calls.append((stack.undo_text, stack.redo_text)))
    assert not stack.can_undo and stack.undo() is None and stack.redo() is None
    stack.push(DeleteAnnotation(1))
    stack.push(Reorder(1, [3, 2]))
    stack.undo()
    assert stack.can_undo and stack.can_redo
    assert calls[-1] == ("Delete 1 annotation", "Reorder annotations")
    stack.push(ChangeCategory(2, 2))
    assert not stack.can_redo and stack.redo_text == ""
    assert len(calls) == 4


def test_failed_undo_changes_nothing_and_keeps_history(project):
    stack = CommandStack(project)
    cmd = stack.push(AddCategory("bird"))
    project.add_annotation(2, cmd.category_id, rect(0, 2, 0, 2))   # outside the stack
    before = dump(project)
    with pytest.raises(ProjectError, match="used by 1 annotation"):
        stack.undo()
    assert dump(project) == before and stack.undo_text == "Add class 'bird'"


def test_undo_is_one_transaction_with_events_after_commit(project):
    stack = CommandStack(project)
    stack.push(Merge([1, 2, 3]))
    events = []
    project.subscribe(lambda event, payload: events.append((event, payload["id"])))
    stack.undo()
    assert sorted(events) == [("annotation_added", 2), ("annotation_added", 3),
                              ("annotation_changed", 1)]


def test_random_sequences_of_commands_undo_redo(project):
    """Seeded random walk: after every undo/redo the store equals the state recorded
    when that point of the history was first reached; undoing all returns to the start."""
    rng = random.Random(1234)
    stack = CommandStack(project)
    history = [dump(project)]          # history[i]: state with i commands done
    done = 0
    for step in range(250):
        anns = project.annotations()
        roll = rng.random()
        if roll < 0.2 and stack.can_undo:
            stack.undo()
            done -= 1
        elif roll < 0.35 and stack.can_redo:
            stack.redo()
            done += 1
        else:
            cmd = _random_command(rng, project, anns)
            if cmd is None:
                continue
            try:
                stack.push(cmd)
            except ProjectError:       # e.g. a split of a one-part mask: refused, no change
                assert dump(project) == history[done]
                continue
            done += 1
            del history[done:]
            history.append(dump(project))
        assert dump(project) == history[done], f"step {step}"
        _check_invariants(project)
    while stack.can_undo:
        stack.undo()
    assert dump(project) == history[0]


def _random_command(rng: random.Random, project: Project, anns: list):
    kind = rng.choice(["add", "add", "delete", "edit", "category", "merge", "split", "reorder"])
    if kind == "add" or not anns:
        y, x = rng.randrange(H - 2), rng.randrange(W - 2)
        return AddAnnotation(rng.choice([1, 2]), rng.choice([1, 2]),
                             rect(y, y + rng.randint(1, 8), x, x + rng.randint(1, 8)))
    ann = rng.choice(anns)
    same_image = [a.id for a in anns if a.image_id == ann.image_id]
    if kind == "delete":
        return DeleteAnnotation(rng.sample(same_image, rng.randint(1, len(same_image))))
    if kind == "edit":
        return EditMask(ann.id, rect(0, rng.randint(1, H), 0, rng.randint(1, W)))
    if kind == "category":
        return ChangeCategory(ann.id, rng.choice([1, 2]))
    if kind == "merge" and len(same_image) >= 2:
        return Merge(rng.sample(same_image, 2))
    if kind == "split":
        return Split(ann.id)
    rng.shuffle(same_image)
    return Reorder(ann.image_id, same_image)


def _check_invariants(project: Project) -> None:
    conn = project._conn
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    for (area, bbox, rle) in conn.execute("SELECT area, bbox, rle FROM annotations"):
        coco = json.loads(rle)
        coco["counts"] = coco["counts"].encode()
        assert area == mu.area(coco) > 0
        assert json.loads(bbox) == [int(v) for v in mu.toBbox(coco)]
