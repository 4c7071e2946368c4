"""Format-neutral in-memory dataset: what importers produce and exporters consume.

The project store loads/saves these in one transaction; file formats convert between
these records and files. Masks are the truth and are carried as COCO RLE dicts
(`{"size": [h, w], "counts": str}`, compressed counts as str).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def human_drawn() -> dict[str, Any]:
    """The provenance of an annotation a person made with the prompt tools."""
    return {"origin": "human", "review": "drawn"}


@dataclass
class ImageRecord:
    id: int
    file_name: str          # path relative to the image root, "/" separators
    width: int
    height: int
    sha256: str = ""        # content hash of the file ("" when unknown)
    orientation: int = 1    # EXIF orientation that was applied (1 = none)
    reviewed: bool = False
    group: str = ""         # for group-aware train/val splits


@dataclass
class CategoryRecord:
    id: int
    name: str
    color: str = ""         # "#rrggbb"; "" = pick one
    supercategory: str = ""


@dataclass
class AnnotationRecord:
    id: int
    image_id: int
    category_id: int
    rle: dict[str, Any]     # COCO RLE, compressed counts (str)
    iscrowd: bool = False
    score: float | None = None
    engine: str = ""
    prompts: list[dict[str, Any]] = field(default_factory=list)  # JSON-able prompt log
    order: int = 0          # z-order within the image (draw/list order)
    created: float = 0.0    # unix seconds
    updated: float = 0.0
    provenance: dict[str, Any] = field(default_factory=human_drawn)   # see store_schema


@dataclass
class CandidateRecord:
    """An engine's proposal waiting for a person: never exported, never counted as an
    annotation. Accepting one turns it into an annotation with engine provenance."""
    id: int
    image_id: int
    rle: dict[str, Any]     # COCO RLE, compressed counts (str)
    score: float
    engine: str
    label: str = ""         # the proposer's class name ("" when it names none)
    provenance: dict[str, Any] = field(default_factory=dict)   # model, run_id, text ...
    status: str = "pending"     # "pending" | "rejected" (kept so a re-run stays rejected)
    edited: bool = False    # a person changed the mask before accepting
    created: float = 0.0
    updated: float = 0.0


@dataclass
class Dataset:
    images: list[ImageRecord] = field(default_factory=list)
    categories: list[CategoryRecord] = field(default_factory=list)
    annotations: list[AnnotationRecord] = field(default_factory=list)
