"""Train/val splits that never put one image (or one group of images) on both sides.

Split "image": each image is a unit. Split "group": images sharing `ImageRecord.group`
(a scene, a patient, a video) are one unit, so near-duplicates cannot leak from train
into val; an image with no group is a unit of its own. Units are shuffled with
`random.Random(seed)` over a sorted list, so a seed gives the same split on any machine,
and val takes whole units until it holds `round(val_fraction * n_images)` images.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable

from annotator.core.dataset import Dataset

SPLIT_KINDS = ("image", "group")


@dataclass(frozen=True)
class Split:
    by: str = "image"          # "image" | "group"
    val_fraction: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.by not in SPLIT_KINDS:
            raise ValueError(f"split must be one of {SPLIT_KINDS}, not {self.by!r}")
        if not 0.0 < float(self.val_fraction) < 1.0:
            raise ValueError(f"val fraction must be between 0 and 1 (exclusive), "
                             f"not {self.val_fraction!r}")

    @classmethod
    def parse(cls, spec: object) -> Split | None:
        """None, a Split, or a tuple ("image"|"group", val_fraction, seed)."""
        if spec is None or isinstance(spec, Split):
            return spec
        if isinstance(spec, (tuple, list)) and len(spec) == 3:
            by, fraction, seed = spec
            return cls(str(by), float(fraction), int(seed))
        raise ValueError(f"split must be None or (\"image\"|\"group\", val_fraction, seed), "
                         f"not {spec!r}")


def split_image_ids(ds: Dataset, split: Split) -> tuple[set[int], set[int]]:
    """(train image ids, val image ids); disjoint, together all images."""
    return split_ids(((img.id, img.group) for img in ds.images), split)


def split_ids(images: Iterable[tuple[int, str]], split: Split, *, keep_both: bool = False
              ) -> tuple[set[int], set[int]]:
    """(train ids, val ids) of (image id, group) pairs: the one split the exporter, the
    trainer and the evaluation all use (training.data.split_by_group calls it), so a seed
    holds out the same images everywhere. `keep_both` keeps both sides non-empty whenever
    there are at least two units (the trainer needs a validation set; an export may leave
    val empty)."""
    units: dict[str, list[int]] = {}
    for image_id, group in images:
        key = f"g:{group}" if split.by == "group" and group else f"i:{image_id}"
        units.setdefault(key, []).append(image_id)
    keys = sorted(units)
    random.Random(split.seed).shuffle(keys)
    target = round(split.val_fraction * sum(len(ids) for ids in units.values()))
    val: list[str] = []
    taken = 0
    for key in keys:
        if taken >= target:
            break
        val.append(key)
        taken += len(units[key])
    if keep_both and len(keys) >= 2:
        if not val:
            val = keys[:1]
        elif len(val) == len(keys):
            val = val[:-1]
    val_ids = {i for key in val for i in units[key]}
    return {i for ids in units.values() for i in ids} - val_ids, val_ids


def subset(ds: Dataset, image_ids: set[int]) -> Dataset:
    """The images in `image_ids`, their annotations, and every category (so class ids
    and names are the same in train and val)."""
    return Dataset(images=[i for i in ds.images if i.id in image_ids],
                   categories=list(ds.categories),
                   annotations=[a for a in ds.annotations if a.image_id in image_ids])
