"""What the trainer iterates over: one instance (object mask) of one image.

`TrainItem` hides where pixels and masks come from (a COCO export on disk, an occlusion
variant built in memory, a test's arrays); `items_from_coco` builds them from a dataset
with a group-aware train/val split.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .api import InputFrame, TrainPrompt


@dataclass(eq=False)
class TrainItem:
    image_size: tuple[int, int]                 # (H, W)
    load_image: Callable[[], np.ndarray]        # -> (H, W, 3) uint8 RGB
    load_mask: Callable[[], np.ndarray]         # -> (H, W) bool
    stored_prompt: TrainPrompt | None = None    # what the annotator did, original pixels
    name: str = ""                              # for messages: "file.png#12"
    source: object = None                       # items with the same source share an image
    key_fn: Callable[[], str] | None = None     # content hash of the pixels, computed lazily
    _key: str | None = field(default=None, repr=False)
    _frame_masks: dict = field(default_factory=dict, repr=False)

    @property
    def image_key(self) -> str:
        """Content hash of the pixels: the feature-cache key (an occlusion variant is a
        different image, so it gets its own features)."""
        if self._key is None:
            self._key = self.key_fn()
        return self._key

    def frame_mask(self, frame: InputFrame) -> np.ndarray:
        """The mask in the model's input frame (S x S bool), memoised bit-packed."""
        key = (frame.side, frame.input_size)
        packed = self._frame_masks.get(key)
        if packed is None:
            packed = np.packbits(frame.mask(self.load_mask()))
            self._frame_masks[key] = packed
        return np.unpackbits(packed, count=frame.side * frame.side).reshape(frame.side, frame.side).astype(bool)


def image_groups(items: list[TrainItem]) -> list[list[TrainItem]]:
    """The items (instances) of each image together, images in first-seen order."""
    groups: dict[object, list[TrainItem]] = {}
    for item in items:
        groups.setdefault(item.source if item.source is not None else id(item), []).append(item)
    return list(groups.values())


def union_items(items: list[TrainItem]) -> list[TrainItem]:
    """One item per image whose mask is the union of that image's instance masks (the
    target of a promptless engine: salient objects, DIS), in first-seen order."""
    return [_union(group) for group in image_groups(items)]


def _union(group: list[TrainItem]) -> TrainItem:
    first = group[0]
    if len(group) == 1:
        return first

    def union() -> np.ndarray:
        out = np.zeros(first.image_size, bool)
        for item in group:
            out |= np.asarray(item.load_mask(), bool)
        return out
    return TrainItem(first.image_size, first.load_image, union, None,
                     f"{first.name.split(' annotation')[0]} (union of {len(group)})",
                     source=first.source, key_fn=first.key_fn, _key=first._key)


def items_from_arrays(image: np.ndarray, masks: list[np.ndarray], key: str | None = None,
                      prompts: list[TrainPrompt | None] | None = None) -> list[TrainItem]:
    """Items for in-memory data (tests, occlusion variants, benchmarks)."""
    from engines.files import image_digest
    key = key or image_digest(image)
    prompts = prompts or [None] * len(masks)
    return [TrainItem(tuple(image.shape[:2]), lambda image=image: image, lambda m=m: m, p,
                      f"array#{i}", source=key, _key=key)
            for i, (m, p) in enumerate(zip(masks, prompts))]


def items_from_coco(data: str | None, images: str | None, val_fraction: float,
                    seed: int, occlusion: float = 0.0,
                    category_names: list[str] | None = None) -> tuple[list[TrainItem], list[TrainItem]]:
    """(train, val) items of a COCO instances file and its images folder, split by group
    (no image or group on both sides). `occlusion` > 0 adds that fraction (of the
    training images) of synthetic-occlusion variants to the training side only.
    `category_names` keeps only those categories' objects; the split is made over all
    images, so it is the same as without the filter."""
    if not data or not images:
        raise ValueError("training needs --data (a COCO instances json) and --images (its folder)")
    from .data import CocoInstances, split_by_group
    dataset = CocoInstances.load(data, images, category_names)
    if val_fraction > 0:
        train, val = split_by_group(dataset, val_fraction, seed)
    else:
        train, val = dataset, None
    samples = train.samples()
    if occlusion > 0:
        from .occlusion import occlusion_samples
        samples += occlusion_samples(train, round(occlusion * len(samples)), seed)
    return _items(samples), (_items(val.samples()) if val is not None else [])


def _items(samples) -> list[TrainItem]:
    """One item per instance of each sample; a sample renders its pixels (and, for a
    variant, its edited masks) on demand, so nothing is held in memory up front."""
    out = []
    for sample in samples:
        for index, inst in enumerate(sample.instances):
            out.append(TrainItem(
                tuple(sample.size), sample.image,
                lambda sample=sample, index=index: sample.instances[index].mask,
                inst.prompt, f"image {sample.image_id} (variant {sample.variant}) annotation {inst.ann_id}",
                source=(sample.image_id, sample.variant), key_fn=lambda sample=sample: sample.key))
    return out
