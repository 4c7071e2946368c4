"""Named prompt kinds: the training prompt mix and the evaluation protocols.

`make_prompt(kind, mask, rng, frame=None, **opts)` builds one `TrainPrompt` of a named
kind from an instance mask (functions in training.prompts do the work). Without `frame`
everything is in the mask's pixel frame; with an adapter's `InputFrame` the mask is in
original image pixels and the box/points are mapped into the input frame (the noisy mask
is made from `frame.mask(mask)` at S/4, the size of SAM's mask prompt).

Kinds (options in brackets; options a kind does not use are ignored, so one option dict
can serve a whole mix):
  tight-box            exact box (HQ-SAM's "box")
  noisy-box [scale]    HQ-SAM box noise, default scale 0.4 (Stable-SAM)
  points-1/3/5/10      k positive points, uniform (HQ-SAM's permutation)
  points [k]           k uniform positive points, default 10 (HQ-SAM's "point")
  rts-points           k drawn from {1, 3, 10}, uniform positives (Stable-SAM RTS)
  center-point         the farthest-inside pixel (HQ-SAM 1-point eval)
  points+neg [pos, neg, margin]  positives (default 3) + negatives near the object (2)
  noisy-mask [low_res] HQ-SAM's band-noise mask prompt
  iou-band [lo, hi, max_tries]   noisy box with IoU in [lo, hi) (Stable-SAM COCO bins)
  stored [stored, fallback]      the annotator's own prompt (a TrainPrompt in original
                       pixels, from training.data); `fallback` kind (default noisy-box)
                       when the annotation has none
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from engines.types import PromptError
from training import prompts as P
from training.api import InputFrame, TrainPrompt

KindFn = Callable[..., TrainPrompt]


def _points(kind: str, xy: np.ndarray, labels: np.ndarray | None = None) -> TrainPrompt:
    labels = np.ones(len(xy), np.int64) if labels is None else labels
    return TrainPrompt(kind=kind, points=xy, labels=labels)


def _positives(k: int) -> KindFn:
    return lambda mask, rng, **o: _points(f"points-{k}", P.positive_points(mask, rng, k))


def _points_k(mask, rng, k: int = 10, **_) -> TrainPrompt:
    return _points("points", P.positive_points(mask, rng, int(k)))


def _rts_points(mask, rng, **_) -> TrainPrompt:
    k = int(rng.choice([1, 3, 10]))
    return _points("rts-points", P.positive_points(mask, rng, k))


def _points_neg(mask, rng, pos: int = 3, neg: int = 2, margin: float | None = None,
                **_) -> TrainPrompt:
    p = P.positive_points(mask, rng, int(pos))
    n = P.negative_points(mask, rng, int(neg), margin)
    labels = np.concatenate([np.ones(len(p), np.int64), np.zeros(len(n), np.int64)])
    return _points("points+neg", np.concatenate([p, n]), labels)


def _noisy_mask(mask, rng, low_res: int | None = None, **_) -> TrainPrompt:
    if low_res is None:
        raise PromptError("prompt kind 'noisy-mask' needs low_res (the mask prompt's side, "
                          "S/4) or an input frame")
    return TrainPrompt(kind="noisy-mask", mask=P.noisy_mask(mask, rng, int(low_res)))


def _iou_band(mask, rng, lo: float = 0.5, hi: float = 0.6, max_tries: int = 1000,
              **_) -> TrainPrompt:
    return TrainPrompt(kind="iou-band", box=P.box_in_iou_band(mask, rng, lo, hi, max_tries))


PROMPT_KINDS: dict[str, KindFn] = {
    "tight-box": lambda mask, rng, **_: TrainPrompt(kind="tight-box", box=P.tight_box(mask)),
    "noisy-box": lambda mask, rng, scale=0.4, **_: TrainPrompt(
        kind="noisy-box", box=P.noisy_box(mask, rng, float(scale))),
    **{f"points-{k}": _positives(k) for k in (1, 3, 5, 10)},
    "points": _points_k,
    "rts-points": _rts_points,
    "center-point": lambda mask, rng, **_: _points(
        "center-point", P.positive_points(mask, rng, 1, "center")),
    "points+neg": _points_neg,
    "noisy-mask": _noisy_mask,
    "iou-band": _iou_band,
    # promptless engines ("auto": pmg-sam): the target is the whole mask, nothing is given
    "none": lambda mask, rng, **_: TrainPrompt(kind="none"),
}
STORED = "stored"


def _known() -> str:
    return ", ".join([*PROMPT_KINDS, STORED])


def _check_kind(kind: str) -> None:
    if kind not in PROMPT_KINDS and kind != STORED:
        raise ValueError(f"unknown prompt kind {kind!r}; known kinds: {_known()}")


def to_frame(prompt: TrainPrompt, frame: InputFrame) -> TrainPrompt:
    """The prompt's box and points mapped from original pixels into `frame` (its mask,
    already a low-res input-frame prompt, is kept)."""
    return TrainPrompt(
        kind=prompt.kind,
        box=None if prompt.box is None else frame.box(prompt.box),
        points=None if prompt.points is None else frame.coords(prompt.points),
        labels=None if prompt.labels is None else np.asarray(prompt.labels).copy(),
        mask=prompt.mask)


def make_prompt(kind: str, mask: np.ndarray, rng: np.random.Generator,
                frame: InputFrame | None = None, **opts: Any) -> TrainPrompt:
    """One prompt of `kind` for `mask` (see the module note for kinds, options, frames)."""
    _check_kind(kind)
    mask = np.asarray(mask, bool)
    if frame is not None and tuple(frame.image_size) != mask.shape:
        raise PromptError(f"mask is {mask.shape[1]}x{mask.shape[0]} but the input frame is "
                          f"for a {frame.image_size[1]}x{frame.image_size[0]} image")
    if kind == STORED:
        stored = opts.get("stored")
        if stored is None:
            fallback = opts.get("fallback", "noisy-box")
            if fallback == STORED:
                raise ValueError("the fallback of prompt kind 'stored' cannot be 'stored'")
            return make_prompt(fallback, mask, rng, frame, **opts)
        prompt = TrainPrompt(kind=STORED, box=stored.box, points=stored.points,
                             labels=stored.labels)
    elif kind == "noisy-mask" and frame is not None:
        opts = {**opts, "low_res": opts.get("low_res") or frame.side // 4}
        return PROMPT_KINDS[kind](frame.mask(mask), rng, **opts)
    else:
        prompt = PROMPT_KINDS[kind](mask, rng, **opts)
    return prompt if frame is None else to_frame(prompt, frame)


def sample_kind(mix: dict[str, float], rng: np.random.Generator) -> str:
    """A kind drawn with probability proportional to its weight in `mix` (kinds taken in
    sorted order, so the dict's order does not change the draw)."""
    if not mix:
        raise ValueError(f"prompt mix is empty; known kinds: {_known()}")
    names = sorted(mix)
    for name in names:
        _check_kind(name)
    weights = np.array([float(mix[n]) for n in names])
    if not all(math.isfinite(w) and w >= 0 for w in weights) or weights.sum() <= 0:
        raise ValueError(f"prompt mix weights must be finite, >= 0 and not all 0: {mix}")
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]
