"""labelme's label conventions, as the readers and writers apply them.

- `__ignore__` marks regions to leave out of training and evaluation. They are kept in
  the project as crowd regions (iscrowd=1, which training skips) of a category named
  `__ignore__`, and LabelMe export writes them back as `__ignore__` shapes. Every other
  export leaves them out, as labelme's own labelme2coco does: a COCO crowd region only
  excuses detections of its own category (pycocotools' COCOeval), so an `__ignore__`
  crowd could not ignore anything and would only add a fake class; YOLO and PNG masks
  have no way to say "ignore" at all.
- `_background_` is no class: its shapes are checked, then dropped.
- `labels.txt` beside the LabelMe files (labelme's `--labels` file, one label a line) is
  the class list and order: categories get ids 1, 2, ... in its order, listed classes
  without shapes included, and a shape whose label it does not list is refused.
"""
from __future__ import annotations

from pathlib import Path

from annotator.core.dataset import Dataset
from annotator.core.errors import FormatError

IGNORE_LABEL = "__ignore__"
BACKGROUND_LABEL = "_background_"
LABELS_FILE = "labels.txt"
SPECIAL_LABELS = (IGNORE_LABEL, BACKGROUND_LABEL)


def read_labels_file(path: Path) -> list[str]:
    """The class names of a labels.txt, in order, without the two special labels."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise FormatError(path, f"cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise FormatError(path, f"not UTF-8 text (byte {exc.start})") from None
    names: list[str] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        name = line.strip()
        if not name:
            continue
        if name in seen:
            raise FormatError(path, f"line {number}: label {name!r} is already on line "
                                    f"{seen[name]}")
        seen[name] = number
        if name not in SPECIAL_LABELS:
            names.append(name)
    return names


def without_ignore_regions(ds: Dataset) -> Dataset:
    """`ds` without the `__ignore__` category and its regions (for formats that cannot
    mark a region as ignored)."""
    ignored = {c.id for c in ds.categories if c.name == IGNORE_LABEL}
    if not ignored:
        return ds
    return Dataset(images=ds.images,
                   categories=[c for c in ds.categories if c.id not in ignored],
                   annotations=[a for a in ds.annotations if a.category_id not in ignored])
