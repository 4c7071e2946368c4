"""Proposals -> candidates: threshold, minimum area, suppression against existing work
and among the proposals; and the property that matters most: nothing Auto or autolabel
does changes an annotation a person made."""
from __future__ import annotations

import numpy as np
import pytest
from autolabel_helpers import make_project
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_candidates_store import box

from annotator.core import commands as cmd
from annotator.core.automation.candidates import (CandidateOptions, encode_proposals,
                                                  proposals_to_candidates)
from annotator.core.automation.review import accept_all_shown
from annotator.core.automation.runs import RunSettings, store_proposals
from annotator.core.errors import InputError
from annotator.core.geometry import mask_to_rle, rle_to_mask
from annotator.core.store import Project
from engines.types import Proposals


def proposals(masks, scores, names=None):
    masks = np.stack(masks)
    return Proposals(masks, np.asarray(scores, np.float32), np.zeros((len(masks), 4), np.float32),
                     "test-amg", class_names=names)


def test_threshold_area_and_suppression():
    existing = [mask_to_rle(box(y0=0, y1=10, x0=0, x1=10))]
    p = proposals([box(y0=0, y1=10, x0=0, x1=11),        # duplicate of existing work
                   box(y0=20, y1=40, x0=20, x1=40),      # kept
                   box(y0=20, y1=40, x0=21, x1=40),      # duplicate of the one above
                   box(y0=40, y1=42, x0=50, x1=52),      # too small (4 px)
                   box(y0=30, y1=45, x0=45, x1=60)],     # below the threshold
                  [0.9, 0.8, 0.7, 0.9, 0.2], ["a", "b", "c", None, "e"])
    conv = proposals_to_candidates(encode_proposals(p), existing,
                                   CandidateOptions(threshold=0.5, min_area=5), {"run_id": "r"})
    assert [c.label for c in conv.candidates] == ["b"]
    assert (conv.duplicates, conv.too_small, conv.below_threshold) == (2, 1, 1)
    assert conv.candidates[0].provenance["run_id"] == "r"


def test_scores_are_clipped_into_0_1_and_empty_masks_dropped():
    p = proposals([box(), np.zeros((48, 64), bool)], [1.07, 0.5])
    enc = encode_proposals(p)
    assert enc.scores == [1.0] and len(enc) == 1


@pytest.mark.parametrize("options, problem", [
    (CandidateOptions(threshold=1.5), "threshold 1.5 is not a number in"),
    (CandidateOptions(threshold=float("nan")), "threshold nan"),
    (CandidateOptions(suppress_iou=-0.1), "suppress iou -0.1"),
    (CandidateOptions(min_area=-1), "minimum area -1"),
])
def test_bad_candidate_options(options, problem):
    with pytest.raises(InputError, match=problem):
        options.checked()


boxes = st.tuples(st.integers(0, 40), st.integers(1, 8), st.integers(0, 56), st.integers(1, 8))


def _mask(b):
    y, h, x, w = b
    return box(y0=y, y1=y + h, x0=x, x1=x + w)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(human=st.lists(boxes, min_size=1, max_size=4),
       proposed=st.lists(st.tuples(boxes, st.floats(0, 1)), min_size=1, max_size=6),
       iou=st.floats(0.05, 1.0))
def test_human_annotations_are_never_changed(tmp_path_factory, human, proposed, iou):
    path = make_project(tmp_path_factory.mktemp("p"), n=1)
    with Project.open(path) as project:
        cat = project.add_category("cat")
        for b in human:
            project.add_annotation(1, cat.id, _mask(b))
        before = project.annotations()
        settings_ = RunSettings("auto", "test-amg", "tiny", candidate=CandidateOptions(suppress_iou=iou))
        p = proposals([_mask(b) for b, _ in proposed], [s for _, s in proposed])
        store_proposals(project, 1, p, settings_, "run1")
        store_proposals(project, 1, p, settings_, "run2")        # again: adds nothing new
        stack = cmd.CommandStack(project)
        accept = accept_all_shown(project, 1, 0.0)
        if accept is not None:
            stack.push(accept)
        after = project.annotations()
        assert after[:len(before)] == before                 # unchanged, in place
        for ann in after[len(before):]:
            assert ann.provenance["origin"] == "engine"
            mask = rle_to_mask(ann.rle)
            for old in before:
                other = rle_to_mask(old.rle)
                assert (mask & other).sum() / (mask | other).sum() <= iou + 1e-9
        if accept is not None:
            stack.undo()
            assert project.annotations() == before
