"""Synthetic occlusion for "ambiguous" prompts (stable_sam.md §3 [C]).

An object cut out of another image (by its mask) is pasted over the target at 0.3-0.7 of
the target box's size, overlapping the target's box; the target's truth becomes
GT & ~paste. A box drawn around the target now also encloses the occluder, and the model
must still answer with the target alone. `occlusion_samples` builds N such images as
extra `Sample`s (variant ids 1..N), rendered on demand and deterministic for a seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.data import (CocoInstances, ImageEntry, Instance, Sample, instance_from_mask,
                           load_image)
from training.prompts import tight_box


def occlusion_variant(image: np.ndarray, target_mask: np.ndarray, occluder_image: np.ndarray,
                      occluder_mask: np.ndarray, rng: np.random.Generator,
                      scale: tuple[float, float] = (0.3, 0.7), tries: int = 10
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(new image, new target mask = target & ~paste). The occluder's cut-out (its mask's
    box, aspect kept) is resized so that it fits s x the target box, s ~ U(scale), and
    pasted with its centre uniform inside the target box (clipped at the image border).
    A placement that would hide the whole target is redrawn, up to `tries` times."""
    out, paste = _occlude(image, target_mask, occluder_image, occluder_mask, rng, scale, tries)
    return out, np.asarray(target_mask, bool) & ~paste


def _occlude(image: np.ndarray, target_mask: np.ndarray, occluder_image: np.ndarray,
             occluder_mask: np.ndarray, rng: np.random.Generator,
             scale: tuple[float, float], tries: int) -> tuple[np.ndarray, np.ndarray]:
    """(new image, pasted pixels) of `occlusion_variant`."""
    target_mask, occluder_mask = np.asarray(target_mask, bool), np.asarray(occluder_mask, bool)
    if image.shape[:2] != target_mask.shape or occluder_image.shape[:2] != occluder_mask.shape:
        raise ValueError(f"image {image.shape[:2]} / target mask {target_mask.shape} and "
                         f"occluder image {occluder_image.shape[:2]} / mask "
                         f"{occluder_mask.shape} must have matching sizes")
    if not 0 < scale[0] <= scale[1]:
        raise ValueError(f"scale must be (lo, hi) with 0 < lo <= hi, got {scale}")
    tx0, ty0, tx1, ty1 = tight_box(target_mask).astype(int)
    ox0, oy0, ox1, oy1 = tight_box(occluder_mask).astype(int)
    cut_img = np.ascontiguousarray(occluder_image[oy0:oy1 + 1, ox0:ox1 + 1])
    cut_mask = occluder_mask[oy0:oy1 + 1, ox0:ox1 + 1].astype(np.uint8)
    tw, th, ow, oh = tx1 - tx0 + 1, ty1 - ty0 + 1, ox1 - ox0 + 1, oy1 - oy0 + 1
    H, W = target_mask.shape
    for _ in range(max(1, tries)):
        f = rng.uniform(*scale) * min(tw / ow, th / oh)
        pw, ph = max(1, round(ow * f)), max(1, round(oh * f))
        # centre inside the target box, so the patch always overlaps the image
        cx, cy = rng.uniform(tx0, tx1 + 1), rng.uniform(ty0, ty1 + 1)
        px, py = int(np.floor(cx - pw / 2)), int(np.floor(cy - ph / 2))
        patch = cv2.resize(cut_img, (pw, ph), interpolation=cv2.INTER_LINEAR).reshape(
            ph, pw, *cut_img.shape[2:])
        pmask = cv2.resize(cut_mask, (pw, ph), interpolation=cv2.INTER_NEAREST) > 0
        x0, y0, x1, y1 = max(px, 0), max(py, 0), min(px + pw, W), min(py + ph, H)
        sub = (slice(y0 - py, y1 - py), slice(x0 - px, x1 - px))
        paste = np.zeros((H, W), bool)
        paste[y0:y1, x0:x1] = pmask[sub]
        if (target_mask & ~paste).any():
            break
    out = image.copy()
    region = out[y0:y1, x0:x1]
    region[pmask[sub]] = patch[sub][pmask[sub]]
    return out, paste


@dataclass(frozen=True)
class _OcclusionRecipe:
    """Everything one variant needs; calling it renders (image, instances)."""
    target_image: ImageEntry
    target: Instance
    others: tuple[Instance, ...]            # the target image's other instances
    occluder_image: ImageEntry
    occluder: Instance
    seed: tuple[int, int]
    scale: tuple[float, float]

    def __call__(self) -> tuple[np.ndarray, list[Instance]]:
        rng = np.random.default_rng(list(self.seed))
        image = load_image(self.target_image.path)
        occ = image if self.occluder_image == self.target_image else \
            load_image(self.occluder_image.path)
        new_image, paste = _occlude(image, self.target.mask, occ, self.occluder.mask, rng,
                                    self.scale, tries=10)
        new_target = self.target.mask & ~paste
        instances = [instance_from_mask(self.target, new_target)] if new_target.any() else []
        for inst in self.others:           # the paste hides parts of them too
            m = inst.mask & ~paste
            if m.any():
                instances.append(instance_from_mask(inst, m))
        return new_image, instances


def occlusion_samples(dataset: CocoInstances, n: int, seed: int = 0,
                      scale: tuple[float, float] = (0.3, 0.7)) -> list[Sample]:
    """`n` occlusion variants (variant ids 1..n, each with the target's image id and
    group), deterministic for `seed`. Each picks a target instance uniformly and an
    occluder from another image (the same image only when there is no other). Build them
    from the training split only, so no validation object is pasted into training."""
    images = {img.id: img for img in dataset.images}
    pool = [inst for inst in dataset.instances if not inst.iscrowd]
    if n > 0 and len(pool) < 2:
        raise ValueError(f"occlusion variants need at least 2 instances, the dataset has "
                         f"{len(pool)}")
    per_image = dataset.by_image()
    out = []
    for k in range(1, n + 1):
        rng = np.random.default_rng([seed, k])
        target = pool[int(rng.integers(len(pool)))]
        candidates = [i for i in pool if i.image_id != target.image_id] or \
            [i for i in pool if i is not target]
        occluder = candidates[int(rng.integers(len(candidates)))]
        img = images[target.image_id]
        recipe = _OcclusionRecipe(
            img, target, tuple(i for i in per_image[img.id] if i is not target),
            images[occluder.image_id], occluder, (seed, k), tuple(scale))
        out.append(Sample(img.id, k, img.size, img.group, recipe))
    return out
