"""The `classic` engine: OpenCV GrabCut seeded by a box, clicks or a previous mask.

It needs no checkpoint, so a new user gets real masks before downloading any model, and it
is the last step of the router's fallback chain.

How it works (all on a downscaled working copy, long side <= `max_side`):
- box: GrabCut with everything outside the box as sure background (GC_INIT_WITH_RECT's
  labelling, built by hand so that clicks and a previous mask go into the same first pass);
- points only: a colour flood fill (cv2.floodFill, floating range, tolerance chosen per
  click, see `_flood`) from each positive click marks the probable object, a band around it
  probable background, beyond that sure background; clicks are sure object / sure
  background discs; then GrabCut with GC_INIT_WITH_MASK;
- `Prompt.mask_logits` (a previous answer) is the probable-object prior when given.
GrabCut runs only on a region around the prompt, further downscaled to at most
`grabcut_pixels` pixels and stopped once its mask settles, which keeps one predict on a
1024x768 image at about 35-60 ms on 2 CPU cores (a click on a region covering most of
the image: ~120-150 ms). Deterministic: GrabCut's k-means is seeded each call.
With clicks only (no box), everything happens in a *reach* around the positive clicks
(their box grown by a quarter of the image's long side plus half their spread, grown
further while the object runs out of it; negative clicks are sure background inside it):
a flood that fills most of the reach has leaked and is not taken, and the reach stops
growing before a flood covers half the image, so one or two clicks on a small object
never select the road and the sky. When growing had to stop there, or the mask still
fills most of the reach and runs out of it on two sides, the answer carries
`extras["note"]` (NOT_SEPARATED) saying that the object could not be separated, and a
halved score.
Afterwards only the parts connected to the positive clicks are kept, and a part that a
negative click touches but which is joined to the object (same colour, touching) is cut
off at the narrowest neck between the two (see `_split_at_neck`).

Outputs follow engines.types: masks (1, H, W) bool at the original size (upscaled with
INTER_LINEAR from a slightly smoothed mask, so edges are not blocky). K is always 1;
`Prompt.multimask` is ignored. `scores` is a heuristic confidence, NOT a predicted IoU: the
colour separation between the mask and a band around it (1 - colour histogram
intersection), in [0, 1]; 0 for an empty mask. `low_res_logits` (1, 256, 256) float32 use
SAM's frame (the image scaled so its long side is 256, padded at the bottom/right) with
logits of about +-10, so they can be fed back as `Prompt.mask_logits`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from engines.prompts import check_image, validate_prompt
from engines.types import Embedding, EngineError, Prediction, Prompt, PromptError

LOW_RES = 256            # side of the low-res logits frame (SAM's)
_LOGIT = 10.0            # magnitude of the logits we emit for in / out
_MIN_SAMPLES = 10        # GrabCut's GMMs need a few pixels of each side
_PLATEAU = 1.1          # flood areas within this ratio of each other: a stable region
_SETTLED = 0.002         # GrabCut stops when fewer than this share of pixels change
_KEEP_FRACTION = 0.05    # box mode: parts smaller than this share of the largest are specks
_REACH_STEPS = (0.25, 0.4, 0.6, 1.0)   # clicks only: work within this share of the long
#                          side around them (the next one while the object runs out of it),
_REACH_SPREAD = 0.5      # ... plus this much of the clicks' own spread
_MOST = 0.4              # a mask over this share of the image from clicks is the scene
_SCENE_AREA = 0.12       # a flood over this share of the image that runs along more than
_SCENE_CONTACT = 0.3     # ... this share of the image's border is ground, sky or a wall
_LEAK = 0.6              # a flood over this share of the reach has leaked into the scene
_CROWDED = 0.5           # a mask over this share of the reach, touching two of its inner
#                          sides, is the object run into its surroundings: said in a note
NOT_SEPARATED = ("the classic engine could not separate the object from its surroundings "
                 "(same colours): add background clicks (right click) or draw a box")


@dataclass(frozen=True)
class _Crop:
    """The region GrabCut sees: working-copy box [x0, x1) x [y0, y1) scaled by (gx, gy)."""
    x0: int
    y0: int
    x1: int
    y1: int
    gx: float
    gy: float

    def to_sub(self, xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """Working-copy points (N, 2) -> integer pixel indices inside the crop; points
        outside the crop are dropped (they are beyond anything GrabCut can label)."""
        inside = (xy[:, 0] >= self.x0) & (xy[:, 0] <= self.x1) \
            & (xy[:, 1] >= self.y0) & (xy[:, 1] <= self.y1)
        sub = (xy[inside] - (self.x0, self.y0)) * (self.gx, self.gy)
        ij = np.floor(sub).astype(np.int64)
        ij[:, 0] = ij[:, 0].clip(0, shape[1] - 1)
        ij[:, 1] = ij[:, 1].clip(0, shape[0] - 1)
        return ij


class ClassicEngine:
    name = "classic"
    backbone_key = "classic:v1"

    def __init__(self, *, max_side: int = 640, iterations: int = 5,
                 grabcut_pixels: int = 30_000, max_flood_tolerance: int = 16, **_ignored):
        # _ignored: the router passes options every engine gets (device, checkpoint, ...).
        for option, value, low in (("max_side", max_side, 16), ("iterations", iterations, 1),
                                   ("grabcut_pixels", grabcut_pixels, 256),
                                   ("max_flood_tolerance", max_flood_tolerance, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise EngineError(f"classic engine: {option} must be an integer >= {low}, got {value!r}")
        self.max_side = max_side
        self.iterations = iterations
        self.grabcut_pixels = grabcut_pixels
        # Floating-range tolerances (per colour channel, between neighbouring pixels) tried in turn.
        self.flood_ladder = [t for t in (1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 32)
                             if t <= max_flood_tolerance]

    def embed(self, image: np.ndarray) -> Embedding:
        image = check_image(image)
        H, W = image.shape[:2]
        scale = min(1.0, self.max_side / max(H, W))
        if scale < 1.0:
            size = (max(1, round(W * scale)), max(1, round(H * scale)))
            work = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        else:
            work = image.copy()   # our own copy: the caller may reuse its buffer
        return Embedding(backbone_key=self.backbone_key, image_size=(H, W),
                         input_size=work.shape[:2], features={}, image=work,
                         meta={"engine": self.name})

    def predict(self, emb: Embedding, prompt: Prompt) -> Prediction:
        if emb.image is None or emb.backbone_key != self.backbone_key:
            raise EngineError(f"the classic engine needs an embedding from its own embed(), "
                              f"got one for backbone {emb.backbone_key!r}")
        p = validate_prompt(prompt, emb.image_size)
        if p.points is None and p.box is None and p.mask_logits is None:
            raise PromptError("the classic engine answers points and boxes, not text prompts")
        work = emb.image
        H, W = emb.image_size
        h, w = work.shape[:2]
        scale = np.array([w / W, h / H], dtype=np.float64)
        pos = neg = np.zeros((0, 2))
        if p.points is not None:
            pts = p.points.astype(np.float64) * scale
            pos, neg = pts[p.labels == 1], pts[p.labels == 0]
        box = None if p.box is None else p.box.astype(np.float64) * np.tile(scale, 2)
        prior = None if p.mask_logits is None else _prior_from_logits(p.mask_logits, (H, W), (h, w))
        soft, crop, score, note = self._segment(work, pos, neg, box, prior)
        pred = _prediction(soft, crop, score, (H, W), scale)
        if note and pred.masks.any():
            pred.extras["note"] = note
        return pred

    # -- the segmentation proper, in working-copy coordinates ---------------------------------

    def _segment(self, work, pos, neg, box, prior):
        h, w = work.shape[:2]
        radius = max(2, round(0.006 * max(h, w)))          # click disc, working pixels
        region = None                                      # probable object (points mode)
        reach, note = None, None
        if box is None:
            region = np.zeros((h, w), bool) if prior is None else prior.copy()
            if len(pos):
                flood, reach, note = self._flood_in_reach(work, pos, neg, radius, prior)
                if region.any():                           # the previous answer stays in
                    ys, xs = np.nonzero(region)
                    reach = (min(reach[0], int(xs.min())), min(reach[1], int(ys.min())),
                             max(reach[2], int(xs.max()) + 1), max(reach[3], int(ys.max()) + 1))
                region |= flood
            if not region.any():                           # only negative clicks, empty prior
                return None, None, 0.0, None
            ys, xs = np.nonzero(region)
            lo, hi = np.array([xs.min(), ys.min()]), np.array([xs.max() + 1, ys.max() + 1])
            margin = 0.25 * (hi - lo).max() + 0.02 * max(h, w)
        else:
            lo, hi = box[:2], box[2:]
            margin = 0.1 * (hi - lo).max() + 6
        if len(pos):
            lo, hi = np.minimum(lo, pos.min(0) - radius), np.maximum(hi, pos.max(0) + radius)
        x0, y0 = (np.floor(lo - margin).astype(int)).clip(0, (w - 1, h - 1))
        x1, y1 = (np.ceil(hi + margin).astype(int)).clip((x0 + 1, y0 + 1), (w, h))
        if reach is not None:                              # GrabCut stays in the reach too
            x0, y0 = max(int(x0), reach[0]), max(int(y0), reach[1])
            x1, y1 = max(min(int(x1), reach[2]), x0 + 1), max(min(int(y1), reach[3]), y0 + 1)
        g = min(1.0, math.sqrt(self.grabcut_pixels / ((x1 - x0) * (y1 - y0))))
        sw, sh = max(1, round((x1 - x0) * g)), max(1, round((y1 - y0) * g))
        crop = _Crop(int(x0), int(y0), int(x1), int(y1), sw / (x1 - x0), sh / (y1 - y0))
        sub = work[y0:y1, x0:x1]
        if (sw, sh) != (x1 - x0, y1 - y0):
            sub = cv2.resize(sub, (sw, sh), interpolation=cv2.INTER_AREA)
        sub = np.ascontiguousarray(sub)
        r = max(1, round(radius * min(crop.gx, crop.gy)))

        if box is not None:
            labels = _box_labels(box, prior, crop, (sh, sw))
        else:
            # The object may differ from the flood by up to `margin`; beyond that band (not
            # at a straight crop edge) it is sure background.
            obj = _resize_bool(region[y0:y1, x0:x1], (sw, sh))
            away = cv2.distanceTransform((~obj).astype(np.uint8), cv2.DIST_L2, 3)
            labels = np.full((sh, sw), cv2.GC_BGD, np.uint8)
            labels[away <= margin * min(crop.gx, crop.gy)] = cv2.GC_PR_BGD
            labels[obj] = cv2.GC_PR_FGD
        pos_ij, neg_ij = crop.to_sub(pos, (sh, sw)), crop.to_sub(neg, (sh, sw))
        for x, y in neg_ij:
            cv2.circle(labels, (int(x), int(y)), r, cv2.GC_BGD, -1)
        for x, y in pos_ij:
            cv2.circle(labels, (int(x), int(y)), r, cv2.GC_FGD, -1)

        fg = self._grabcut(sub, labels)
        anchors = pos_ij
        if box is not None and not len(pos_ij) and fg.any():
            # A box is drawn around its object: the object pixel nearest its centre anchors it.
            centre = crop.to_sub(((box[:2] + box[2:]) / 2)[None], (sh, sw))[0]
            ys, xs = np.nonzero(fg)
            k = np.argmin((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2)
            anchors = np.array([[xs[k], ys[k]]])
        fg = _keep_parts(fg, anchors, neg_ij, r, keep_large=box is not None or prior is not None)
        score = _separation(sub, fg)
        if reach is not None and fg.sum() / (crop.gx * crop.gy) > _MOST * h * w:
            # GrabCut ran into the scene: keep it near the flood, and say so
            near = cv2.dilate(obj.astype(np.uint8), cv2.getStructuringElement(
                cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0
            fg, note = fg & near, NOT_SEPARATED
        if reach is not None and (note or _crowded(fg, (x0, y0, x1, y1), (w, h))):
            note, score = NOT_SEPARATED, score / 2
        soft = cv2.GaussianBlur(fg.astype(np.float32), (0, 0), 0.7)   # no staircase edges
        return soft, crop, score, note

    def _flood_in_reach(self, work, pos, neg, radius, prior):
        """The flood from the clicks, in a reach that grows (_REACH_STEPS) while the
        object runs out of it; growing stops when the flood would cover most of the image
        (it has run into the scene: the smaller answer is kept, with a note).
        Returns (flood, reach, note or None)."""
        h, w = work.shape[:2]
        best = None
        for share in _REACH_STEPS:
            reach = _reach(pos, h, w, share)
            flood = self._flood(work, pos, neg, radius, prior, reach)
            if best is not None and flood.sum() > _MOST * h * w:
                return best[0], best[1], NOT_SEPARATED
            best = (flood, reach)
            if reach == (0, 0, w, h) or not _runs_out(flood, reach, (w, h)):
                break
        return best[0], best[1], None

    def _flood(self, work, pos, neg, radius, prior, reach=None):
        """Colour flood fill from each positive click, within a window around the clicks.

        The tolerance adapts to the click: floods at rising tolerances are compared and the
        first stable region wins (raising the tolerance barely changes its area: it is
        bounded by real edges), so neither texture (too low a tolerance) nor a leak into
        the background (too high) decides it; (nearly) the whole window never wins."""
        h, w = work.shape[:2]
        if reach is None:
            pad = 0.4 * max(h, w)
            x0, y0 = np.floor(pos.min(0) - pad).astype(int).clip(0)
            x1, y1 = np.ceil(pos.max(0) + pad).astype(int).clip(None, (w, h))
        else:
            x0, y0, x1, y1 = reach
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        blurred = cv2.GaussianBlur(work[y0:y1, x0:x1], (0, 0), 2.0)  # texture is not an edge
        blocked = np.zeros((y1 - y0 + 2, x1 - x0 + 2), np.uint8)
        for x, y in neg:                                   # a flood never crosses a "no" click
            cv2.circle(blocked, (int(x) - x0 + 1, int(y) - y0 + 1), radius, 1, -1)
        flags = 4 | cv2.FLOODFILL_MASK_ONLY | (255 << 8)   # floating range: follows shading
        share = 0.95 if reach is None else _LEAK
        small, huge = max(20, int(0.002 * h * w)), share * (y1 - y0) * (x1 - x0)
        region = np.zeros((y1 - y0, x1 - x0), bool)
        for x, y in pos:
            px, py = min(int(x), w - 1) - x0, min(int(y), h - 1) - y0
            if (prior is not None and prior[py + y0, px + x0]) or region[py, px] or blocked[py + 1, px + 1]:
                continue                                  # already inside the object
            fills, areas = [], []
            for tol in self.flood_ladder:
                fill = blocked.copy()
                area, *_ = cv2.floodFill(blurred, fill, (px, py), 0, (tol,) * 3, (tol,) * 3, flags)
                if area > huge or (reach is not None and _scene(fill, (x0, y0, x1, y1), area,
                                                                (w, h))):
                    break                                 # flooded everything: leaked
                if area >= small:
                    fills.append(fill)
                    areas.append(area)
            if not fills:                                 # clicked a speck: assume a blob
                fill = blocked.copy()
                cv2.circle(fill, (px + 1, py + 1), max(radius, round(0.04 * min(h, w))), 255, -1)
            else:
                fill = fills[_first_plateau_end(areas)]
            region |= fill[1:-1, 1:-1] == 255
        out = np.zeros((h, w), bool)
        out[y0:y1, x0:x1] = region
        return out

    def _grabcut(self, sub, labels):
        is_fg = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
        n_fg = int(is_fg.sum())
        if n_fg < _MIN_SAMPLES or labels.size - n_fg < _MIN_SAMPLES:
            return is_fg                                  # nothing to learn colours from
        result = labels.copy()
        bgd, fgd = np.zeros((1, 65)), np.zeros((1, 65))
        cv2.setRNGSeed(0)                                 # GrabCut's k-means: deterministic
        try:
            # One iteration per call, so we can stop once the mask has settled (usually
            # after 2-3 of the `iterations`); GC_EVAL continues with the learnt models.
            mode, fg = cv2.GC_INIT_WITH_MASK, is_fg
            for _ in range(self.iterations):
                cv2.grabCut(sub, result, None, bgd, fgd, 1, mode)
                mode, before = cv2.GC_EVAL, fg
                fg = (result == cv2.GC_FGD) | (result == cv2.GC_PR_FGD)
                if np.count_nonzero(fg != before) <= _SETTLED * fg.size:
                    break
        except cv2.error:                                 # degenerate colours: keep the seeds
            return is_fg
        return fg


# -- helpers ----------------------------------------------------------------------------------

def _reach(pos: np.ndarray, h: int, w: int, share: float) -> tuple[int, int, int, int]:
    """The working window (x0, y0, x1, y1) of a clicks-only prompt: the positive clicks'
    box grown by `share` of the long side plus _REACH_SPREAD of their spread."""
    lo, hi = pos.min(0), pos.max(0)
    grow = share * max(h, w) + _REACH_SPREAD * float((hi - lo).max())
    x0, y0 = (np.floor(lo - grow).astype(int)).clip(0, (w - 1, h - 1))
    x1, y1 = (np.ceil(hi + grow).astype(int)).clip((x0 + 1, y0 + 1), (w, h))
    return int(x0), int(y0), int(x1), int(y1)


def _scene(fill: np.ndarray, window, area: int, size) -> bool:
    """A flood (floodFill's mask of `window`, one pixel of padding) that is large and
    runs along much of the image's border: the road, the sky or a wall, not an object."""
    w, h = size
    if area <= _SCENE_AREA * h * w:
        return False
    x0, y0, x1, y1 = window
    region = fill[1:-1, 1:-1] == 255
    contact = (int(region[0].sum()) if y0 == 0 else 0) + \
        (int(region[-1].sum()) if y1 == h else 0) + \
        (int(region[:, 0].sum()) if x0 == 0 else 0) + (int(region[:, -1].sum()) if x1 == w else 0)
    return contact > _SCENE_CONTACT * 2 * (h + w)


def _runs_out(region: np.ndarray, window, size) -> bool:
    """The region reaches a side of `window` that is not the image's border."""
    x0, y0, x1, y1 = window
    w, h = size
    return bool((x0 > 0 and region[y0:y1, x0].any()) or (y0 > 0 and region[y0, x0:x1].any())
                or (x1 < w and region[y0:y1, x1 - 1].any())
                or (y1 < h and region[y1 - 1, x0:x1].any()))


def _crowded(fg: np.ndarray, window, size) -> bool:
    """The mask fills most of its window and runs out of it on two or more sides that
    are not the image's border: it is the scene, not an object."""
    if fg.mean() <= _CROWDED:
        return False
    x0, y0, x1, y1 = window
    w, h = size
    sides = ((x0 > 0, fg[:, 0]), (y0 > 0, fg[0, :]), (x1 < w, fg[:, -1]), (y1 < h, fg[-1, :]))
    return sum(inner and edge.mean() > 0.5 for inner, edge in sides) >= 2


def _first_plateau_end(areas: list[int]) -> int:
    """Index of the last flood of the first run of floods whose area barely changes (a
    region bounded by real edges); without such a run, the steadiest step."""
    growth = [b / a for a, b in zip(areas, areas[1:])]
    if not growth:
        return 0
    for i, step in enumerate(growth):
        if step <= _PLATEAU:
            while i + 1 < len(growth) and growth[i + 1] <= _PLATEAU:
                i += 1
            return i + 1
    return int(np.argmin(growth)) + 1


def _prior_from_logits(logits: np.ndarray, image_size, work_size) -> np.ndarray:
    """(1, S, S) logits in SAM's padded frame -> bool mask of the working copy."""
    frame = logits[0]
    if frame.shape[0] != frame.shape[1] or frame.shape[0] < 2:
        raise PromptError(f"mask_logits must be square low-res logits (1, S, S), got {logits.shape}")
    S = frame.shape[0]
    (H, W), (h, w) = image_size, work_size
    ch, cw = max(1, round(H * S / max(H, W))), max(1, round(W * S / max(H, W)))
    content = np.ascontiguousarray(frame[:ch, :cw], dtype=np.float32)
    return cv2.resize(content, (w, h), interpolation=cv2.INTER_LINEAR) > 0


def _resize_bool(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if mask.shape[::-1] == tuple(size):
        return mask.copy()
    return cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_LINEAR) > 127


def _box_labels(box, prior, crop: _Crop, shape) -> np.ndarray:
    """GC_INIT_WITH_RECT's labelling: sure background outside the box, probable inside."""
    sh, sw = shape
    rx0 = int(np.floor((box[0] - crop.x0) * crop.gx))
    ry0 = int(np.floor((box[1] - crop.y0) * crop.gy))
    rx1 = int(np.ceil((box[2] - crop.x0) * crop.gx))
    ry1 = int(np.ceil((box[3] - crop.y0) * crop.gy))
    rx0, rx1 = _at_least_two(rx0, rx1, sw)
    ry0, ry1 = _at_least_two(ry0, ry1, sh)
    if (rx0, ry0, rx1, ry1) == (0, 0, sw, sh) and sw > 4 and sh > 4:
        rx0, ry0, rx1, ry1 = 1, 1, sw - 1, sh - 1         # a whole-image box: the rim is background
    labels = np.full(shape, cv2.GC_BGD, np.uint8)
    labels[ry0:ry1, rx0:rx1] = cv2.GC_PR_FGD
    if prior is not None:
        inside = np.zeros(shape, bool)
        inside[ry0:ry1, rx0:rx1] = True
        prior_sub = _resize_bool(prior[crop.y0:crop.y1, crop.x0:crop.x1], (sw, sh))
        if (prior_sub & inside).any():
            labels[inside & ~prior_sub] = cv2.GC_PR_BGD
    return labels


def _at_least_two(lo: int, hi: int, size: int) -> tuple[int, int]:
    lo, hi = max(0, lo), min(size, hi)
    if hi - lo < 2:
        mid = (lo + hi) // 2
        lo = max(0, min(mid - 1, size - 2))
        hi = min(size, lo + 2)
    return lo, hi


def _keep_parts(fg, anchors, neg, r, keep_large: bool) -> np.ndarray:
    """Keep the parts holding an anchor (and, for boxes / priors, other large parts that no
    negative click touches); cut off what a negative click marks inside an anchored part."""
    if not fg.any():
        return fg
    joined = fg.astype(np.uint8)
    for x, y in neg:
        cv2.circle(joined, (int(x), int(y)), r, 1, -1)
    n, parts = cv2.connectedComponents(joined, connectivity=8)
    anchored = {int(parts[y, x]) for x, y in anchors} - {0}
    refused = {int(parts[y, x]) for x, y in neg} - {0}
    keep = np.zeros(n, bool)
    keep[np.array(sorted(anchored), dtype=np.int64)] = True
    if keep_large or not len(anchors):
        areas = np.bincount(parts[fg], minlength=n)
        keep |= areas >= _KEEP_FRACTION * areas.max()
        keep[np.array(sorted(refused - anchored), dtype=np.int64)] = False
    out = fg & keep[parts]
    for part in anchored & refused:
        inside = parts == part
        mine = [(x, y) for x, y in anchors if parts[y, x] == part]
        theirs = [(x, y) for x, y in neg if parts[y, x] == part]
        out &= ~inside | _split_at_neck(inside, mine, theirs, r)
    return out


def _split_at_neck(part: np.ndarray, mine, theirs, r: int) -> np.ndarray:
    """The side of `part` that holds `mine`, cut from `theirs` at the narrowest neck.

    Erode the part (distance transform > t) with the smallest t that puts the two groups of
    clicks in different pieces, then grow both pieces back at the same speed (watershed on a
    flat image): they meet at the neck. With no neck, the cut is halfway between the clicks.
    """
    dist = cv2.distanceTransform(part.astype(np.uint8), cv2.DIST_L2, 3)
    top, cores = float(dist.max()), None
    lo = 0.0
    for k in range(1, 16):              # coarse: too deep an erosion merges the clicks again
        split = _cores_apart(dist > top * k / 16, mine, theirs)
        if split is not None:
            hi, cores = top * k / 16, split
            break
        lo = top * k / 16
    for _ in range(4 if cores is not None else 0):      # fine: the shallowest erosion that cuts
        t = (lo + hi) / 2
        split = _cores_apart(dist > t, mine, theirs)
        if split is None:
            lo = t
        else:
            hi, cores = t, split
    h, w = part.shape
    markers = np.full((h + 2, w + 2), 3, np.int32)        # 3: outside the part; 1 px rim
    inner = markers[1:-1, 1:-1]
    inner[part] = 0
    if cores is not None:
        inner[cores[0]], inner[cores[1]] = 1, 2
    for label, clicks in ((1, mine), (2, theirs)):
        for x, y in clicks:
            cv2.circle(inner, (int(x), int(y)), r, label, -1)
    inner[~part & (inner != 3)] = 3
    flat = np.full((h + 2, w + 2, 3), 255, np.uint8)      # walls outside, flat inside
    flat[1:-1, 1:-1][part] = 0
    cv2.watershed(flat, markers)
    ours = (inner == 1).astype(np.uint8)
    grown = cv2.dilate(ours, np.ones((3, 3), np.uint8)) > 0   # watershed lines are ours
    return part & grown & (inner != 2)


def _cores_apart(core: np.ndarray, mine, theirs):
    """Pieces of `core` nearest to each group of clicks, or None if a piece is shared."""
    ys, xs = np.nonzero(core)
    if not len(xs):
        return None
    _, pieces = cv2.connectedComponents(core.astype(np.uint8), connectivity=8)

    def nearest(clicks):
        return {int(pieces[ys[k], xs[k]]) for k in
                (np.argmin((xs - x) ** 2 + (ys - y) ** 2) for x, y in clicks)}
    a, b = nearest(mine), nearest(theirs)
    if a & b:
        return None
    return np.isin(pieces, list(a)), np.isin(pieces, list(b))


def _separation(sub: np.ndarray, fg: np.ndarray) -> float:
    """1 - colour-histogram intersection of the mask and a band around it, in [0, 1]."""
    area = int(fg.sum())
    if area == 0:
        return 0.0
    k = max(3, int(0.2 * math.sqrt(area)) | 1)
    band = cv2.dilate(fg.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    band = (band > 0) & ~fg
    if not band.any():
        return 0.0
    hists = []
    for m in (fg, band):
        hist = cv2.calcHist([sub], [0, 1, 2], m.astype(np.uint8), [8, 8, 8], [0, 256] * 3)
        hists.append(hist / max(hist.sum(), 1.0))
    return float(1.0 - np.minimum(*hists).sum())


def _prediction(soft, crop: _Crop | None, score: float, image_size, scale) -> Prediction:
    """Paste the crop's soft mask into the original-size mask and SAM's low-res frame."""
    H, W = image_size
    mask = np.zeros((1, H, W), bool)
    logits = np.full((1, LOW_RES, LOW_RES), -_LOGIT, np.float32)
    if soft is not None:
        sx, sy = scale
        f = LOW_RES / max(H, W)
        for target, (fx, fy), cut in ((mask[0], (1 / sx, 1 / sy), 0.5),
                                      (logits[0], (f / sx, f / sy), None)):
            X0, X1 = round(crop.x0 * fx), round(crop.x1 * fx)
            Y0, Y1 = round(crop.y0 * fy), round(crop.y1 * fy)
            X1, Y1 = min(X1, target.shape[1]), min(Y1, target.shape[0])
            if X1 <= X0 or Y1 <= Y0:
                continue
            up = cv2.resize(soft, (X1 - X0, Y1 - Y0), interpolation=cv2.INTER_LINEAR)
            target[Y0:Y1, X0:X1] = up > cut if cut is not None else (2 * up - 1) * _LOGIT
    if not mask.any():
        score = 0.0
    return Prediction(masks=mask, scores=np.array([score], np.float32),
                      low_res_logits=logits, engine="classic")
