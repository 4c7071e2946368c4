"""`sam-amg` / `sam2-amg`: "segment everything" on a SAM or SAM 2 host, the algorithm of
SamAutomaticMaskGenerator / SAM2AutomaticMaskGenerator: a grid of single clicks decoded
in batches, predicted-IoU and stability filters, box NMS, optional crop layers with NMS
between crops, then small-region removal.

The answer is the reference's (same masks, same order, same scores) and costs less:
- the predicted-IoU filter runs before the masks are upsampled (the reference upsamples
  every candidate to 1024 px and then to the image, then throws most away); the
  upsampling of a mask does not depend on the others, so this changes no value;
- survivors are upsampled a few at a time (no 3 x points_per_batch full-size logit maps
  at once), kept as boolean masks at crop size until NMS has chosen, and never run
  through RLE and back;
- on a default (not `exact`) host, clicks are decoded by the host's fast decoder, equal
  up to float rounding (bound: tests/test_engines/sam_amg/test_amg_fast_path.py).
One choice differs on SAM 2: SAM2AutomaticMaskGenerator hands `min_mask_region_area` to
its predictor's CUDA hole filling, which the CPU build skips with a warning (so the option
silently does nothing there); here it removes small regions as SAM's generator does, on
every device.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from engines.auto import (crop_boxes, layer_point_grids, masks_to_boxes, near_crop_edge, nms,
                          remove_small_regions, stability_score, uncrop_boxes, uncrop_masks,
                          uncrop_points)
from engines.hosts import Sam2Engine, SamEngine, sam2_scale_coords, upsample_logits
from engines.prompts import check_image
from engines.sam_amg.options import AmgOptions
from engines.types import Cancel, CancelledError, Embedding, OptionsError, Proposals

UPSAMPLE_CHUNK = 16     # full-size logit maps held at once


class _Found:
    """The proposals of one crop (or of all, once merged): masks at crop size."""

    def __init__(self, masks, scores, stability, points, boxes, crop):
        self.masks, self.scores, self.stability = masks, scores, stability
        self.points, self.boxes, self.crop = points, boxes, crop

    def keep(self, index: torch.Tensor) -> None:
        for name in ("masks", "scores", "stability", "points", "boxes", "crop"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value[index])


class SamAmgEngine:
    """Proposer over a SamEngine host (exact or fast: the host decides)."""
    name = "sam-amg"
    host_class: Any = SamEngine
    family = "sam"

    def __init__(self, host, *, defaults: AmgOptions | None = None):
        self.host = host
        self.device = host.device
        self.defaults = (defaults or AmgOptions.for_host(self.family)).checked()

    @property
    def backbone_key(self) -> str:
        return self.host.backbone_key      # clicks and Auto share one embedding

    @classmethod
    def from_checkpoint(cls, path: str | Path, arch: str | None = None, device=None,
                        exact: bool = False):
        return cls(cls.host_class.from_checkpoint(path, arch=arch, device=device, exact=exact))

    @property
    def input_side(self) -> int:
        return self.host.input_side

    def embed(self, image: np.ndarray) -> Embedding:
        return self.host.embed(image)

    def check_options(self, options: Mapping[str, Any] | None) -> None:
        """OptionsError for options `propose` would refuse (a batch checks them once)."""
        self.defaults.updated(options)

    @torch.no_grad()
    def propose(self, emb: Embedding, options: Mapping[str, Any] | None = None, *,
                cancel: Cancel | None = None,
                image: np.ndarray | Callable[[], np.ndarray] | None = None) -> Proposals:
        """Every object the grid finds; `image` (the pixels `emb` was made from, or a
        function that reads them) is needed only for crop layers, whose tiles are
        embedded here."""
        opts = self.defaults.updated(options)
        h, w = emb.image_size
        crops, layers = crop_boxes((h, w), opts.crop_n_layers, opts.crop_overlap_ratio)
        if len(crops) > 1:
            if image is None:
                raise OptionsError("crop_n_layers > 0 needs the image's pixels to embed its crops")
            image = check_image(image() if callable(image) else image)
            if image.shape[:2] != (h, w):
                raise OptionsError(f"the image is {image.shape[1]}x{image.shape[0]} but the "
                                   f"embedding was made from a {w}x{h} one")
        grids = layer_point_grids(opts.points_per_side, opts.crop_n_layers,
                                  opts.crop_n_points_downscale_factor)
        parts = []
        for crop, layer in zip(crops, layers):
            _check(cancel)
            x0, y0, x1, y1 = crop
            crop_emb = emb if crop == [0, 0, w, h] else self.host.embed(image[y0:y1, x0:x1])
            part = self._process_crop(crop_emb, crop, grids[layer], (h, w), opts, cancel)
            part.masks = uncrop_masks(part.masks, crop, h, w)
            parts.append(part)
        found = _cat(parts)
        if len(crops) > 1:
            crop_area = (found.crop[:, 2] - found.crop[:, 0]) * (found.crop[:, 3] - found.crop[:, 1])
            found.keep(nms(found.boxes, 1 / crop_area.float(), opts.crop_nms_thresh))
        if opts.min_mask_region_area > 0:
            _drop_small_regions(found, opts.min_mask_region_area,
                                max(opts.box_nms_thresh, opts.crop_nms_thresh))
        return self._proposals(found, (h, w))

    # -- one crop

    def _process_crop(self, emb: Embedding, crop: list[int], grid: np.ndarray,
                      image_size: tuple[int, int], opts: AmgOptions, cancel: Cancel | None) -> _Found:
        ch, cw = emb.image_size
        points = grid * np.array([cw, ch])[None, :]
        parts = []
        for start in range(0, len(points), opts.points_per_batch):
            _check(cancel)
            parts.append(self._process_batch(emb, points[start:start + opts.points_per_batch],
                                             crop, image_size, opts))
        found = _cat(parts)
        found.keep(nms(found.boxes, found.scores, opts.box_nms_thresh))
        found.boxes = uncrop_boxes(found.boxes, crop)
        found.points = uncrop_points(found.points, crop)
        return found

    def _process_batch(self, emb: Embedding, points: np.ndarray, crop: list[int],
                       image_size: tuple[int, int], opts: AmgOptions) -> _Found:
        low_res, iou, clicks = self._decode_clicks(emb, points, opts)
        if opts.pred_iou_thresh > 0.0:         # before upsampling: the main saving
            keep = iou > opts.pred_iou_thresh
            low_res, iou, clicks = low_res[keep], iou[keep], clicks[keep]
        stability, masks = [], []
        for start in range(0, len(low_res), UPSAMPLE_CHUNK):
            logits = self._upsample(low_res[start:start + UPSAMPLE_CHUNK], emb)
            stability.append(stability_score(logits, opts.mask_threshold, opts.stability_score_offset))
            masks.append(logits > opts.mask_threshold)
        ch, cw = emb.image_size
        stability_t = torch.cat(stability) if stability else torch.zeros(0)
        masks_t = torch.cat(masks) if masks else torch.zeros(0, ch, cw, dtype=torch.bool)
        found = _Found(masks_t, iou, stability_t, clicks, None, None)
        if opts.stability_score_thresh > 0.0:
            found.keep(stability_t >= opts.stability_score_thresh)
        found.boxes = masks_to_boxes(found.masks)
        h, w = image_size
        edge = near_crop_edge(found.boxes, crop, [0, 0, w, h])
        if edge.any():
            found.keep(~edge)
        found.crop = torch.tensor([crop] * len(found.scores), dtype=torch.int64).reshape(-1, 4)
        return found

    # -- the host's decoder, as SamPredictor.predict_torch

    def _decode_clicks(self, emb: Embedding, points: np.ndarray, opts: AmgOptions):
        model = self.host.model
        coords = torch.as_tensor(self.host.transform.apply_coords(points, emb.image_size),
                                 device=self.device)
        labels = torch.ones(len(coords), dtype=torch.int, device=self.device)
        sparse, dense = model.prompt_encoder(points=(coords[:, None, :], labels[:, None]),
                                             boxes=None, masks=None)
        low_res, iou = model.mask_decoder(
            image_embeddings=emb.features["image_embed"].to(self.device),
            image_pe=model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True)
        k = low_res.shape[1]
        return (low_res.flatten(0, 1), iou.flatten(0, 1),
                torch.as_tensor(points.repeat(k, axis=0)))

    def _upsample(self, low_res: torch.Tensor, emb: Embedding) -> torch.Tensor:
        return self.host.postprocess(low_res[:, None], emb)[:, 0].cpu()

    # -- the answer

    def _proposals(self, found: _Found, image_size: tuple[int, int]) -> Proposals:
        if len(found.scores) == 0:
            return Proposals.empty(image_size, self.name)
        boxes = found.boxes.float() + torch.tensor([0.0, 0.0, 1.0, 1.0])   # last pixel inclusive -> extent
        sources = [{"point": p, "crop": c, "stability": float(s)}
                   for p, c, s in zip(found.points.tolist(), found.crop.tolist(), found.stability)]
        return Proposals(found.masks.numpy(), found.scores.float().cpu().numpy(),
                         boxes.numpy().astype(np.float32), self.name, sources=sources)


class Sam2AmgEngine(SamAmgEngine):
    """Proposer over a Sam2Engine host, as SAM2AutomaticMaskGenerator (no m2m refinement)."""
    name = "sam2-amg"
    host_class = Sam2Engine
    family = "sam2"

    def _decode_clicks(self, emb: Embedding, points: np.ndarray, opts: AmgOptions):
        model, side = self.host.model, self.host.input_side
        clicks = torch.as_tensor(points, dtype=torch.float32, device=self.device)
        coords = sam2_scale_coords(clicks, emb.image_size, side)
        labels = torch.ones(len(coords), dtype=torch.int, device=self.device)
        sparse, dense = model.sam_prompt_encoder(points=(coords[:, None, :], labels[:, None]),
                                                 boxes=None, masks=None)
        f = {k: v.to(self.device) for k, v in emb.features.items()}
        low_res, iou, _, _ = model.sam_mask_decoder(
            image_embeddings=f["image_embed"], image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=opts.multimask_output, repeat_image=len(coords) > 1,
            high_res_features=[f["high_res_0"], f["high_res_1"]])
        k = low_res.shape[1]
        return low_res.flatten(0, 1), iou.flatten(0, 1), clicks.repeat_interleave(k, dim=0).cpu()

    def _upsample(self, low_res: torch.Tensor, emb: Embedding) -> torch.Tensor:
        return upsample_logits(low_res[:, None].float(), emb.image_size)[:, 0].cpu()


def _check(cancel: Cancel | None) -> None:
    if cancel is not None and cancel():
        raise CancelledError("proposal run cancelled")


def _cat(parts: list[_Found]) -> _Found:
    return _Found(*(torch.cat([getattr(p, name) for p in parts])
                    for name in ("masks", "scores", "stability", "points", "boxes", "crop")))


def _drop_small_regions(found: _Found, min_area: int, nms_thresh: float) -> None:
    """Fill small holes, drop small islands, then NMS again preferring untouched masks
    (as the reference's postprocess_small_regions)."""
    if len(found.scores) == 0:
        return
    masks, untouched = [], []
    for mask in found.masks.numpy():
        mask, filled = remove_small_regions(mask, min_area, "holes")
        mask, dropped = remove_small_regions(mask, min_area, "islands")
        masks.append(torch.as_tensor(mask))
        untouched.append(float(not (filled or dropped)))
    new = torch.stack(masks)
    boxes = masks_to_boxes(new)
    keep = nms(boxes, torch.as_tensor(untouched), nms_thresh)
    changed = torch.as_tensor(untouched) == 0.0
    found.masks = torch.where(changed[:, None, None], new, found.masks)
    found.boxes = torch.where(changed[:, None], boxes, found.boxes)
    found.keep(keep)
