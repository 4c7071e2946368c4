"""DeleteCategory: a class goes in one undoable step, its annotations (on every image)
moved to another class or deleted with it; undo restores the class and the annotations
exactly, redo does it again."""
from __future__ import annotations

import pytest

from annotator.core.commands import CommandStack, DeleteCategory
from annotator.core.errors import ProjectError

from test_commands import check_do_undo_redo, project, rect  # noqa: F401  (fixture)


def test_delete_moves_the_annotations_to_another_class(project):  # noqa: F811
    project.add_annotation(2, 1, rect(0, 5, 0, 5))          # on the other image too
    stack = check_do_undo_redo(project, DeleteCategory(1, move_to=2))
    assert [c.name for c in project.categories()] == ["dog"]
    assert {a.category_id for a in project.annotations()} == {2}
    assert len(project.annotations()) == 4
    assert stack.undo().description == "Delete class 'cat'"
    assert [c.name for c in project.categories()] == ["cat", "dog"]
    assert {a.category_id for a in project.annotations()} == {1}


def test_delete_with_its_annotations(project):  # noqa: F811
    ids = [a.id for a in project.annotations()]
    check_do_undo_redo(project, DeleteCategory(1))
    assert project.annotations() == [] and [c.name for c in project.categories()] == ["dog"]
    stack = CommandStack(project)
    stack.push(DeleteCategory(2))                           # unused: just the class
    assert project.categories() == []
    stack.undo()
    assert [c.name for c in project.categories()] == ["dog"]
    assert ids                                              # the first fixture had some


def test_delete_refuses_moving_into_itself_or_a_missing_class(project):  # noqa: F811
    stack = CommandStack(project)
    for move_to in (1, 99):
        with pytest.raises(ProjectError):
            stack.push(DeleteCategory(1, move_to=move_to))
    assert [c.name for c in project.categories()] == ["cat", "dog"]
    assert len(project.annotations()) == 3
