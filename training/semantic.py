"""Semantic targets from instance annotations, for SAM-MI's dense training and its mIoU.

A COCO export of the project holds instances (a mask and a category each); a semantic
label map gives every pixel the index of its category in a vocabulary. Two pixels are
ambiguous and get the ignore label 255 (detectron2's convention, spec §5): a pixel no
instance covers (the project's annotations need not be exhaustive, so "unlabelled" is
not "background") unless a `background` class name is given, and a pixel covered by
instances of two different categories. `semantic_items` turns the trainer's per-instance
items into one item per image that knows its label map.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .items import TrainItem

IGNORE = 255
MAX_VOCABULARY = 255          # class indices 0..254; 255 is the ignore label


def vocabulary_of(items: Sequence[TrainItem], background: str | None = None,
                  start: Sequence[str] = ()) -> list[str]:
    """`start`, then the categories of `items` in first-seen order, then `background`."""
    names = list(start)
    for item in items:
        if item.category is None:
            raise ValueError(f"{item.name or 'an item'} has no category: SAM-MI trains on the "
                             "categories of a COCO export")
        if item.category not in names and item.category != background:
            names.append(item.category)
    if background is not None and background not in names:
        names.append(background)
    if len(names) > MAX_VOCABULARY:
        raise ValueError(f"{len(names)} categories; semantic labels hold at most {MAX_VOCABULARY}")
    return names


def semantic_labels(masks: Sequence[np.ndarray], classes: Sequence[int], size: tuple[int, int],
                    unlabelled: int = IGNORE) -> np.ndarray:
    """(H, W) uint8: each pixel the class of the instances covering it; `unlabelled`
    (255: ignore, or a background class) where none does, 255 where two classes do."""
    out = np.full(size, -1, np.int16)
    for mask, c in zip(masks, classes):
        m = np.asarray(mask, bool)
        if m.shape != tuple(size):
            raise ValueError(f"instance mask is {m.shape[1]}x{m.shape[0]}, the image "
                             f"{size[1]}x{size[0]}")
        clash = m & (out >= 0) & (out != c)
        out[m & (out < 0)] = c
        out[clash] = IGNORE
    out[out < 0] = unlabelled
    return out.astype(np.uint8)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label map to (h, w) (the whole image stretched)."""
    import cv2
    h, w = size
    return cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)


@dataclass(eq=False)
class SemanticItem(TrainItem):
    """One image: `load_mask` is the union of its instances (the trainer's mask), and
    `labels()` its semantic label map in the vocabulary it was made with."""
    instances: list[TrainItem] = field(default_factory=list)
    vocabulary: tuple[str, ...] = ()
    unlabelled: int = IGNORE
    memo: dict = field(default_factory=dict, repr=False)

    def labels(self) -> np.ndarray:
        index = {n: i for i, n in enumerate(self.vocabulary)}
        return semantic_labels([i.load_mask() for i in self.instances],
                               [index[i.category] for i in self.instances], self.image_size,
                               self.unlabelled)


def semantic_items(items: Sequence[TrainItem], vocabulary: Sequence[str],
                   background: str | None = None) -> list[SemanticItem]:
    """One SemanticItem per image (items grouped by `source`, first-seen order)."""
    groups: dict[object, list[TrainItem]] = {}
    for item in items:
        groups.setdefault(item.source if item.source is not None else id(item), []).append(item)
    vocab = tuple(vocabulary)
    unlabelled = vocab.index(background) if background is not None else IGNORE
    out = []
    for group in groups.values():
        first = group[0]
        members = [i for i in group if i.category != background]
        out.append(SemanticItem(first.image_size, first.load_image, _union(group), None,
                                f"{first.name.split(' annotation')[0]} ({len(group)} instances)",
                                source=first.source, key_fn=first.key_fn, _key=first._key,
                                instances=members, vocabulary=vocab, unlabelled=unlabelled))
    return out


def _union(group: list[TrainItem]) -> Callable[[], np.ndarray]:
    def union() -> np.ndarray:
        out = np.zeros(group[0].image_size, bool)
        for item in group:
            out |= np.asarray(item.load_mask(), bool)
        return out
    return union
