"""The options of a "segment everything" run, with the reference generators' defaults
(SamAutomaticMaskGenerator, SAM2AutomaticMaskGenerator); out-of-range values are one
OptionsError naming the option and what it may be."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from engines.types import OptionsError


@dataclass(frozen=True)
class AmgOptions:
    points_per_side: int = 32           # grid of n x n clicks on the image (and each crop)
    points_per_batch: int = 64          # clicks decoded together (memory vs speed)
    pred_iou_thresh: float = 0.88       # keep masks whose predicted IoU is above this
    stability_score_thresh: float = 0.95   # ... and whose stability is at least this
    stability_score_offset: float = 1.0    # logit offset of the stability cut
    mask_threshold: float = 0.0         # logit cut of a mask
    box_nms_thresh: float = 0.7         # box IoU above which the weaker mask is a duplicate
    crop_n_layers: int = 0              # also run on 2x2, 4x4, ... tiles
    crop_nms_thresh: float = 0.7        # NMS between crops (smaller crops win)
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0       # fill holes / drop islands smaller than this (px)
    multimask_output: bool = True       # SAM 2 only: three candidates a click (SAM: always)

    @classmethod
    def for_host(cls, family: str) -> "AmgOptions":
        """The reference generator's defaults for a "sam" or "sam2" host."""
        return cls(pred_iou_thresh=0.8) if family == "sam2" else cls()

    def updated(self, options: Mapping[str, Any] | None) -> "AmgOptions":
        if options is None:
            return self
        if not isinstance(options, Mapping):
            raise OptionsError(f"options must be a mapping of names to values, got "
                               f"{type(options).__name__}")
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise OptionsError(f"unknown option(s) {', '.join(map(str, unknown))}; known: "
                               f"{', '.join(known)}")
        values = {name: _coerce(name, value, known[name].type) for name, value in options.items()}
        return replace(self, **values).checked()

    def checked(self) -> "AmgOptions":
        for name in ("points_per_side", "points_per_batch", "crop_n_points_downscale_factor"):
            _at_least(name, getattr(self, name), 1)
        for name in ("crop_n_layers", "min_mask_region_area"):
            _at_least(name, getattr(self, name), 0)
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh",
                     "crop_nms_thresh", "crop_overlap_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise OptionsError(f"{name} must be between 0 and 1, got {value:g}")
        if self.stability_score_offset < 0:
            raise OptionsError(f"stability_score_offset must be >= 0, got {self.stability_score_offset:g}")
        if self.crop_n_layers > 4:
            raise OptionsError(f"crop_n_layers must be at most 4 (4 layers are 341 crops), "
                               f"got {self.crop_n_layers}")
        if self.points_per_side > 256:
            raise OptionsError(f"points_per_side must be at most 256, got {self.points_per_side}")
        return self


def _coerce(name: str, value: Any, kind: str) -> Any:
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise OptionsError(f"{name} must be true or false, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionsError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise OptionsError(f"{name} must be a finite number, got {value!r}")
    if kind == "int":
        if value != int(value):
            raise OptionsError(f"{name} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


def _at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise OptionsError(f"{name} must be an integer >= {low}, got {value}")
