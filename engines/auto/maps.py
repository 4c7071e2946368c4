"""Instances from one probability map, shared by the map proposers (pmg-sam, ip-sam):
threshold, connected components (4- or 8-connected, a minimum area), score = mean
probability inside, best first; and the options of such a run, validated into a frozen
dataclass (one OptionsError naming the option and its range)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

import cv2
import numpy as np

from engines.types import Cancel, CancelledError, OptionsError, Proposals


@dataclass(frozen=True)
class MapOptions:
    threshold: float = 0.5       # probability above which a pixel is foreground [choice]
    connectivity: int = 8        # 8- or 4-connected components [choice]
    min_area: int = 0            # components smaller than this (px) are dropped [paper: none]
    max_instances: int = 500     # best-scoring components kept (N x H x W masks come back); 0: all

    def updated(self, options: Mapping[str, Any] | None):
        if options is None:
            return self
        if not isinstance(options, Mapping):
            raise OptionsError(f"options must be a mapping of names to values, got "
                               f"{type(options).__name__}")
        known = {f.name: f.type for f in fields(self)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise OptionsError(f"unknown option(s) {', '.join(map(str, unknown))}; known: "
                               f"{', '.join(known)}")
        values = {k: option_number(k, v, known[k] == "int") for k, v in options.items()}
        return replace(self, **values).checked()

    def checked(self):
        if not 0.0 < self.threshold < 1.0:
            raise OptionsError(f"threshold must be between 0 and 1 (exclusive), got {self.threshold:g}")
        if self.connectivity not in (4, 8):
            raise OptionsError(f"connectivity must be 4 or 8, got {self.connectivity}")
        if self.min_area < 0:
            raise OptionsError(f"min_area must be an integer >= 0, got {self.min_area}")
        if self.max_instances < 0:
            raise OptionsError(f"max_instances must be an integer >= 0 (0: all), got {self.max_instances}")
        return self


def option_number(name: str, value: Any, integer: bool) -> int | float:
    """An option's value as a finite number (a whole one when `integer`), else OptionsError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OptionsError(f"{name} must be a finite number, got {value!r}")
    if integer:
        if value != int(value):
            raise OptionsError(f"{name} must be a whole number, got {value!r}")
        return int(value)
    return float(value)


def map_instances(prob: np.ndarray, opts: MapOptions):
    """(H, W) probabilities -> masks (N, H, W) bool, scores (N,) mean probability, boxes
    (N, 4) extents, areas (N,), and how many components there were before the filters."""
    binary = (prob > opts.threshold).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=opts.connectivity)
    h, w = prob.shape
    if n <= 1:
        return (np.zeros((0, h, w), bool), np.zeros(0, np.float32), np.zeros((0, 4), np.float32),
                np.zeros(0, np.int64), 0)
    areas = stats[1:, cv2.CC_STAT_AREA].astype(np.int64)
    sums = np.bincount(labels.ravel(), weights=prob.ravel().astype(np.float64), minlength=n)[1:]
    scores = (sums / areas).astype(np.float32)
    ids = np.nonzero(areas >= max(opts.min_area, 1))[0]
    ids = ids[np.argsort(-scores[ids], kind="stable")]
    if opts.max_instances:
        ids = ids[:opts.max_instances]
    x, y = stats[1:, cv2.CC_STAT_LEFT][ids], stats[1:, cv2.CC_STAT_TOP][ids]
    bw, bh = stats[1:, cv2.CC_STAT_WIDTH][ids], stats[1:, cv2.CC_STAT_HEIGHT][ids]
    boxes = np.stack([x, y, x + bw, y + bh], 1).astype(np.float32)
    # each mask written inside its own box only: np.zeros leaves the rest as untouched
    # (shared zero) pages, so N components cost their boxes' area, not N full images
    masks = np.zeros((len(ids), h, w), bool)
    for i, (c, x0, y0, x1, y1) in enumerate(zip(ids + 1, x, y, x + bw, y + bh)):
        masks[i, y0:y1, x0:x1] = labels[y0:y1, x0:x1] == c
    return masks, scores[ids], boxes, areas[ids], n - 1


def to_uint8(p: np.ndarray) -> np.ndarray:
    """A [0, 1] map as uint8 (p x 255, rounded): how proposers hand maps to the window."""
    return np.clip(np.rint(p * 255.0), 0, 255).astype(np.uint8)


def is_blank(image: np.ndarray) -> bool:
    """Every pixel the same colour: a map proposer has nothing to find (and says so
    with an empty answer, not an error)."""
    return bool((image == image[:1, :1]).all())


def check_cancel(cancel: Cancel | None) -> None:
    if cancel is not None and cancel():
        raise CancelledError("proposal run cancelled")


def map_proposals(prob: np.ndarray, opts: MapOptions, engine: str, image_size: tuple[int, int],
                  extras: dict[str, Any], cancel: Cancel | None = None) -> Proposals:
    """A map proposer's answer: the instances of `prob` (at `image_size`), best first,
    each with its area as its source; `extras` gets the component counts."""
    masks, scores, boxes, areas, found = map_instances(prob, opts)
    check_cancel(cancel)
    extras = {**extras, "components": found, "dropped": found - len(scores)}
    if len(scores) == 0:
        return Proposals.empty(image_size, engine, extras=extras)
    sources = [{"area": int(a)} for a in areas]
    return Proposals(masks, scores, boxes, engine, sources=sources, extras=extras)
