"""SAM on SAM-MI's points (the host's decoder, batched, with AMG's filters), as a mixin of
SamMiEngine. SAM's raw answer to a grid point does not depend on the typed names, so it
is kept per (image embedding, grid point), at most DECODED_POINTS of them: an edited
list on the same image decodes only the points it did not sample before. The dense-grid
baseline and training (no grid indices) do not use that cache."""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from engines.auto import masks_to_boxes, nms, stability_score
from engines.hosts import sam2_scale_coords, upsample_logits
from engines.sam_mi.options import TextOptions
from engines.types import Cancel, CancelledError, Embedding

UPSAMPLE_CHUNK = 16
DECODED_POINTS = 128      # grid points whose SAM answers are kept (3 x 256² floats: 768 KiB each)


class SamPoints:
    """Needs `host`, `family`, `device`, `defaults`, `_decoded` (an OrderedDict) and
    `host_embedding(emb)` from the engine."""

    @torch.no_grad()
    def sam_masks(self, emb: Embedding, points: np.ndarray, options: Mapping[str, Any] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(masks (N, H, W) bool at the image size, SAM's IoU scores, decoder passes) for
        (N, 2) x, y points in original pixels; `emb` needs only the `sam.*` features (the
        training adapter runs SAM online on its sampled points through this)."""
        opts = self.defaults.updated({"classes": ["-"], **(options or {})})
        return self._sam_masks(emb, np.asarray(points, np.float64).reshape(-1, 2), opts, None)

    def _sam_masks(self, emb: Embedding, points: np.ndarray, opts: TextOptions, cancel,
                   grid_index: np.ndarray | None = None):
        """SAM's masks for `points`, AMG's filters applied batch by batch (in point order,
        so memory stays one batch's). With `grid_index` (the points' flat grid indices)
        SAM's raw answers are kept per (embedding, grid point): a point's masks do not
        depend on the text, so an edited list decodes only the points it did not sample
        before."""
        host_emb = self.host_embedding(emb)
        key = _embedding_key(host_emb) if grid_index is not None else None
        masks, scores, passes, self.last_cached = [], [], 0, 0
        self.last_answers = 0                 # SAM's masks before the filters (a note when none pass)
        for start in range(0, len(points), opts.points_per_batch):
            check_cancel(cancel)
            batch = np.arange(start, min(start + opts.points_per_batch, len(points)))
            low_res, iou, decoded = self._batch_answers(host_emb, points, batch, key, grid_index)
            passes += decoded
            self.last_answers += len(iou)
            keep = iou > opts.pred_iou_thresh
            low_res, iou = low_res[keep], iou[keep]
            for s in range(0, len(low_res), UPSAMPLE_CHUNK):
                logits = self._upsample(low_res[s:s + UPSAMPLE_CHUNK].to(self.device), host_emb)
                stable = stability_score(logits, 0.0, 1.0) >= opts.stability_score_thresh
                masks.append((logits > 0.0)[stable])
                scores.append(iou[s:s + UPSAMPLE_CHUNK][stable.to(iou.device)].float().cpu())
        h, w = emb.image_size
        if not masks:
            return torch.zeros(0, h, w, dtype=torch.bool), torch.zeros(0), passes
        masks_t, scores_t = torch.cat(masks), torch.cat(scores)
        nonempty = masks_t.flatten(1).any(1)
        masks_t, scores_t = masks_t[nonempty], scores_t[nonempty]
        if len(masks_t):
            keep = nms(masks_to_boxes(masks_t), scores_t, opts.box_nms_thresh)
            masks_t, scores_t = masks_t[keep], scores_t[keep]
        return masks_t, scores_t, passes

    def _batch_answers(self, host_emb: Embedding, points: np.ndarray, batch: np.ndarray, key,
                       grid_index: np.ndarray | None):
        """(low-res logits (3n, h, w), IoU (3n,), 1 if the decoder ran else 0) for the
        points `batch`, from the per-point cache where it has them."""
        if key is None:
            low_res, iou = self._decode(host_emb, points[batch])
            return low_res, iou.float(), 1
        names = [(key, int(grid_index[i])) for i in batch]
        todo = [j for j, name in enumerate(names) if name not in self._decoded]
        if todo:
            low_res, iou = self._decode(host_emb, points[batch[todo]])
            per = low_res.shape[0] // len(todo)
            for n, j in enumerate(todo):      # kept on the CPU, most recent last
                self._decoded[names[j]] = (low_res[n * per:(n + 1) * per].cpu(),
                                           iou[n * per:(n + 1) * per].float().cpu())
        self.last_cached += len(batch) - len(todo)
        for name in names:
            self._decoded.move_to_end(name)
        answers = [self._decoded[name] for name in names]
        while len(self._decoded) > DECODED_POINTS:      # the oldest go (this batch is read)
            self._decoded.popitem(last=False)
        return torch.cat([a[0] for a in answers]), torch.cat([a[1] for a in answers]), int(bool(todo))

    def _decode(self, emb: Embedding, points: np.ndarray):
        model, dev = self.host.model, self.host.device
        if self.family == "sam":
            coords = torch.as_tensor(self.host.transform.apply_coords(points, emb.image_size),
                                     dtype=torch.float32, device=dev)
            labels = torch.ones(len(coords), dtype=torch.int, device=dev)
            sparse, dense = model.prompt_encoder(points=(coords[:, None], labels[:, None]), boxes=None, masks=None)
            low_res, iou = model.mask_decoder(
                image_embeddings=emb.features["image_embed"].to(dev),
                image_pe=model.prompt_encoder.get_dense_pe(), sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense, multimask_output=True)
        else:
            clicks = torch.as_tensor(points, dtype=torch.float32, device=dev)
            coords = sam2_scale_coords(clicks, emb.image_size, self.host.input_side)
            labels = torch.ones(len(coords), dtype=torch.int, device=dev)
            sparse, dense = model.sam_prompt_encoder(points=(coords[:, None], labels[:, None]),
                                                     boxes=None, masks=None)
            f = {k: v.to(dev) for k, v in emb.features.items()}
            low_res, iou, _, _ = model.sam_mask_decoder(
                image_embeddings=f["image_embed"], image_pe=model.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True,
                repeat_image=len(coords) > 1, high_res_features=[f["high_res_0"], f["high_res_1"]])
        return low_res.flatten(0, 1), iou.flatten(0, 1)

    def _upsample(self, low_res: torch.Tensor, emb: Embedding) -> torch.Tensor:
        if self.family == "sam":
            return self.host.postprocess(low_res[:, None], emb)[:, 0].cpu()
        return upsample_logits(low_res[:, None].float(), emb.image_size)[:, 0].cpu()


def _embedding_key(emb: Embedding) -> tuple:
    """Names one image's host embedding by its content (a digest of image_embed), so an
    embedding restored from the disk cache finds the answers decoded on the first."""
    t = emb.features["image_embed"].detach().float().cpu().contiguous()
    digest = hashlib.blake2b(t.numpy().tobytes(), digest_size=12).hexdigest()
    return emb.backbone_key, tuple(emb.image_size), digest




def check_cancel(cancel: Cancel | None) -> None:
    if cancel is not None and cancel():
        raise CancelledError("text proposal run cancelled")
