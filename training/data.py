"""Training data from COCO instances files: our exports and any standard COCO file.

`CocoInstances.load` reads the file with the annotator's own COCO reader (which checks
everything: the JSON, every record, every image file and its size after EXIF
orientation) and keeps masks as RLE, decoded only when asked for. Our exports carry the
annotator's prompt log per annotation (annotator.ui.tools.PromptState.log); the box and
clicks in it become the instance's `prompt`, a TrainPrompt of kind "stored" in original
image pixels.

The trainer consumes `Sample`s: an image (loaded on demand), its instances, and a key
that is a hash of the pixels, so a feature cache keyed on it encodes every distinct
image once, the occlusion variants of training.occlusion included.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from annotator.core import geometry
from annotator.core.errors import FormatError
from annotator.core.formats import coco
from annotator.core.formats._split import Split, split_ids
from annotator.core.images import load_image as _core_load_image
from engines.files import image_digest
from training.api import TrainPrompt


@dataclass(frozen=True)
class ImageEntry:
    id: int
    file_name: str           # relative to the images folder, "/" separators
    path: Path
    size: tuple[int, int]    # (H, W), after EXIF orientation
    group: str = ""          # "" = the image is a group of its own


@dataclass
class Instance:
    image_id: int
    ann_id: int
    category_id: int
    category: str
    rle: dict[str, Any]                 # compressed COCO RLE of the mask
    bbox: tuple[float, float, float, float]   # COCO x, y, w, h of the mask's pixels
    area: int
    prompt: TrainPrompt | None = None   # the annotator's box/clicks, original pixels
    iscrowd: bool = False

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool, decoded from the RLE on every call (nothing kept in memory)."""
        return geometry.rle_to_mask(self.rle)


def instance_from_mask(base: Instance, mask: np.ndarray) -> Instance:
    """`base` with a new mask (RLE, bbox, area follow) and no stored prompt: a prompt
    drawn on the old mask does not describe the new one."""
    area, bbox = geometry.mask_area(mask), geometry.mask_bbox(mask)
    return replace(base, rle=geometry.mask_to_rle(mask), bbox=bbox, area=area, prompt=None)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB with EXIF orientation applied, exactly as the annotator shows
    it (annotator.core.images.load_image); ImageLoadError names a bad file."""
    return _core_load_image(path)


def image_key(image: np.ndarray) -> str:
    """Content hash of the pixels (shape, dtype and bytes): the feature-cache key, the
    same digest the engines' embedding cache uses (engines.files.cache.image_digest)."""
    return image_digest(image)


Render = Callable[[], "tuple[np.ndarray, list[Instance]]"]


@dataclass(eq=False)
class Sample:
    """One training image: the file as stored (variant 0) or a generated variant (> 0).
    `image()` renders the pixels on demand; `key` and `instances` are remembered after
    the first render, so later epochs can look features up without decoding the image."""
    image_id: int
    variant: int
    size: tuple[int, int]
    group: str
    render: Render
    _key: str | None = field(default=None, repr=False)
    _instances: list[Instance] | None = field(default=None, repr=False)

    def image(self) -> np.ndarray:
        image, instances = self.render()
        if image.shape[:2] != tuple(self.size):
            raise FormatError(f"image id {self.image_id}", f"rendered image is "
                              f"{image.shape[1]}x{image.shape[0]}, the dataset says "
                              f"{self.size[1]}x{self.size[0]}")
        self._key, self._instances = image_key(image), instances
        return image

    @property
    def key(self) -> str:
        if self._key is None:
            self.image()
        return self._key  # type: ignore[return-value]

    @property
    def instances(self) -> list[Instance]:
        if self._instances is None:
            self._instances = self.render()[1]
        return self._instances


@dataclass
class CocoInstances:
    images: list[ImageEntry]
    instances: list[Instance]
    categories: dict[int, str]          # id -> name
    source: Path | None = None

    @classmethod
    def load(cls, json_path: str | os.PathLike, images_dir: str | os.PathLike,
             category_names: Iterable[str] | None = None, min_area: int = 1, *,
             include_crowd: bool = False) -> CocoInstances:
        """Read a COCO instances file whose `file_name`s are relative to `images_dir`.
        Keeps annotations of `category_names` (all when None) with at least `min_area`
        pixels; crowd regions only with `include_crowd`. FormatError (a ValueError)
        names the file, the record and the problem: a missing or malformed file, a
        missing image file, an image whose size disagrees with the file."""
        json_path, root = Path(json_path), Path(images_dir)
        if not root.is_dir():
            raise FormatError(json_path, f"images folder {root} does not exist")
        ds = coco.read(json_path, root, check_images=True)
        categories = {c.id: c.name for c in ds.categories}
        wanted = set(categories)
        if category_names is not None:
            names = list(category_names)
            by_name = {n: i for i, n in categories.items()}
            unknown = [n for n in names if n not in by_name]
            if unknown:
                raise ValueError(f"{json_path}: no category named {', '.join(map(repr, unknown))}"
                                 f"; its categories: {', '.join(sorted(by_name))}")
            wanted = {by_name[n] for n in names}
        images = [ImageEntry(i.id, i.file_name, root / i.file_name, (i.height, i.width), i.group)
                  for i in sorted(ds.images, key=lambda r: r.id)]
        instances = []
        for ann in sorted(ds.annotations, key=lambda a: (a.image_id, a.order, a.id)):
            if ann.category_id not in wanted or (ann.iscrowd and not include_crowd):
                continue
            area, bbox = geometry.rle_area_bbox(ann.rle)
            if area < min_area:
                continue
            prompt = stored_prompt(ann.prompts, json_path, f"annotation id {ann.id}")
            instances.append(Instance(ann.image_id, ann.id, ann.category_id,
                                      categories[ann.category_id], ann.rle, bbox, area,
                                      prompt, ann.iscrowd))
        return cls(images, instances, categories, json_path)

    def by_image(self) -> dict[int, list[Instance]]:
        out: dict[int, list[Instance]] = {img.id: [] for img in self.images}
        for inst in self.instances:
            out[inst.image_id].append(inst)
        return out

    def subset(self, image_ids: Iterable[int]) -> CocoInstances:
        keep = set(image_ids)
        return CocoInstances([i for i in self.images if i.id in keep],
                             [a for a in self.instances if a.image_id in keep],
                             dict(self.categories), self.source)

    def samples(self) -> list[Sample]:
        """One Sample per image that has instances, in image id order."""
        per_image = self.by_image()
        return [Sample(img.id, 0, img.size, img.group, _file_render(img, per_image[img.id]))
                for img in self.images if per_image[img.id]]


def _file_render(img: ImageEntry, instances: list[Instance]) -> Render:
    return lambda: (load_image(img.path), instances)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def stored_prompt(log: list[dict[str, Any]], path: Any = "", record: str = ""
                  ) -> TrainPrompt | None:
    """The box and clicks of an annotator prompt log as a TrainPrompt (kind "stored",
    original pixels); None when it has neither. Entries: {"type": "box", "box": [x0, y0,
    x1, y1]}, {"type": "point", "x", "y", "label"}; also the plain {"box": ...} and
    {"points": [[x, y]...], "labels": [...]} forms. Text and answer entries carry no
    geometry and are skipped; a malformed box or point is a FormatError."""
    box, points, labels = None, [], []
    for i, entry in enumerate(log or []):
        kind = entry.get("type")
        where = f"{record}, prompts[{i}]"
        if kind == "box" or (kind is None and "box" in entry):
            b = entry.get("box")
            if not (isinstance(b, list) and len(b) == 4 and all(map(_number, b))):
                raise FormatError(path, f"box must be [x0, y0, x1, y1] numbers, found {b!r}",
                                  where)
            box = np.array([min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]),
                            max(b[1], b[3])], np.float64)
        elif kind == "point":
            x, y, label = entry.get("x"), entry.get("y"), entry.get("label")
            if not (_number(x) and _number(y) and label in (0, 1)):
                raise FormatError(path, f"point needs numbers x, y and label 0 or 1, found "
                                        f"{entry!r}", where)
            points.append((x, y))
            labels.append(int(label))
        elif kind is None and "points" in entry:
            pts, labs = entry.get("points"), entry.get("labels")
            if not (isinstance(pts, list) and isinstance(labs, list) and len(pts) == len(labs)
                    and all(isinstance(p, list) and len(p) == 2 and all(map(_number, p))
                            for p in pts) and all(lab in (0, 1) for lab in labs)):
                raise FormatError(path, f"points/labels must be [[x, y]...] and [0|1...] of "
                                        f"equal length, found {entry!r}", where)
            points += [tuple(p) for p in pts]
            labels += [int(lab) for lab in labs]
    if box is None and not points:
        return None
    return TrainPrompt(kind="stored", box=box,
                       points=np.array(points, np.float64).reshape(-1, 2) if points else None,
                       labels=np.array(labels, np.int64) if points else None)


def split_by_group(dataset: CocoInstances, val_fraction: float = 0.2, seed: int = 0
                   ) -> tuple[CocoInstances, CocoInstances]:
    """(train, val) with no image and no group on both sides (an image without a group is
    a unit of its own): the exporter's group split (annotator.core.formats._split.split_ids,
    the one function the export, the trainer and `annotator eval` share), except that both
    sides are kept non-empty whenever there are at least two units."""
    train_ids, val_ids = split_ids(((img.id, img.group) for img in dataset.images),
                                   Split("group", val_fraction, seed), keep_both=True)
    return dataset.subset(train_ids), dataset.subset(val_ids)


# occlusion variants live in their own module; re-exported here for one import
def __getattr__(name: str):
    if name in ("occlusion_variant", "occlusion_samples"):
        from training import occlusion
        return getattr(occlusion, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
