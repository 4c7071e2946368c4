"""The documented prompt behaviour (engines/prompts.py), shared by every engine."""
import numpy as np
import pytest

from engines.prompts import check_image, validate_prompt
from engines.types import ImageError, Prompt, PromptError


def test_empty_prompt_is_refused():
    with pytest.raises(PromptError, match="empty prompt"):
        validate_prompt(Prompt(), (10, 10))
    with pytest.raises(PromptError, match="empty prompt"):
        validate_prompt(Prompt(points=np.zeros((0, 2))), (10, 10))


@pytest.mark.parametrize("point", [(-1, 5), (5, -0.5), (20.5, 5), (5, 10.01), (np.nan, 1)])
def test_points_outside_the_image_are_refused(point):
    with pytest.raises(PromptError):
        validate_prompt(Prompt(points=np.array([point], float)), (10, 20))


def test_points_on_the_edge_are_accepted_and_labels_default_to_object():
    p = validate_prompt(Prompt(points=np.array([[0, 0], [20, 10]])), (10, 20))
    assert p.points.dtype == np.float32 and p.labels.tolist() == [1, 1]


def test_labels_must_match_and_be_binary():
    with pytest.raises(PromptError, match="2 points but 1 labels"):
        validate_prompt(Prompt(points=np.ones((2, 2)), labels=np.array([1])), (10, 10))
    with pytest.raises(PromptError, match="1 \\(object\\) or 0"):
        validate_prompt(Prompt(points=np.ones((1, 2)), labels=np.array([2])), (10, 10))


def test_box_is_reordered_and_clipped():
    p = validate_prompt(Prompt(box=np.array([30, 8, -5, 2])), (10, 20))
    assert p.box.tolist() == [0, 2, 20, 8]


@pytest.mark.parametrize("box", [(25, 0, 40, 5), (0, 0, 0, 5), (1, 2, 3)])
def test_box_without_area_inside_or_malformed_is_refused(box):
    with pytest.raises(PromptError):
        validate_prompt(Prompt(box=np.array(box, float)), (10, 20))


def test_mask_logits_shape_is_checked():
    assert validate_prompt(Prompt(mask_logits=np.zeros((8, 8))), (10, 10)).mask_logits.shape == (1, 8, 8)
    with pytest.raises(PromptError):
        validate_prompt(Prompt(mask_logits=np.zeros((2, 8, 8))), (10, 10))


@pytest.mark.parametrize("image, message", [
    (np.zeros((4, 4), np.uint8), "H x W x 3"),
    (np.zeros((4, 4, 4), np.uint8), "H x W x 3"),
    (np.zeros((4, 4, 3), np.float32), "uint8"),
    ([[0]], "numpy array"),
])
def test_bad_images_are_refused(image, message):
    with pytest.raises(ImageError, match=message):
        check_image(image)
