"""Pure post-processing of proposed masks: stability, boxes, crop edges, un-cropping,
small regions, NMS. Shapes: masks (N, H, W) logits or bool; boxes (N, 4) XYXY with the
last row / column inclusive, as segment_anything's utils/amg.py has them."""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torchvision.ops import batched_nms


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks cut at threshold +- offset (the high one lies inside the low one,
    so the IoU is a ratio of areas). Counted in int16 rows, then int32, to spare memory."""
    inner = (logits > threshold + offset).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    outer = (logits > threshold - offset).sum(-1, dtype=torch.int16).sum(-1, dtype=torch.int32)
    return inner / outer


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, 4) int64 x0, y0, x1, y1 (inclusive); an empty mask gives 0s."""
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros(0, 4, dtype=torch.int64, device=masks.device)
    rows, cols = masks.any(dim=-1), masks.any(dim=-2)          # (N, H), (N, W)

    def extent(hit: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(size, device=hit.device)[None, :]
        last = (hit * index).amax(dim=-1)
        first = (hit * index + size * ~hit).amin(dim=-1)
        return first, last

    y0, y1 = extent(rows, h)
    x0, x1 = extent(cols, w)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1)
    empty = (x1 < x0) | (y1 < y0)
    return boxes * ~empty[:, None]


def near_crop_edge(boxes: torch.Tensor, crop: list[int], image_box: list[int],
                   tol: float = 20.0) -> torch.Tensor:
    """(N,) True where a box (in crop pixels) touches the crop's border but not the
    image's: the object probably goes on outside the crop."""
    crop_t = torch.as_tensor(crop, dtype=torch.float, device=boxes.device)
    image_t = torch.as_tensor(image_box, dtype=torch.float, device=boxes.device)
    boxes = uncrop_boxes(boxes, crop).float()
    at_crop = torch.isclose(boxes, crop_t[None, :], atol=tol, rtol=0)
    at_image = torch.isclose(boxes, image_t[None, :], atol=tol, rtol=0)
    return (at_crop & ~at_image).any(dim=1)


def uncrop_boxes(boxes: torch.Tensor, crop: list[int]) -> torch.Tensor:
    x0, y0 = crop[0], crop[1]
    return boxes + torch.tensor([[x0, y0, x0, y0]], device=boxes.device)


def uncrop_points(points: torch.Tensor, crop: list[int]) -> torch.Tensor:
    return points + torch.tensor([[crop[0], crop[1]]], device=points.device)


def uncrop_masks(masks: torch.Tensor, crop: list[int], h: int, w: int) -> torch.Tensor:
    x0, y0, x1, y1 = crop
    if (x0, y0, x1, y1) == (0, 0, w, h):
        return masks
    return torch.nn.functional.pad(masks, (x0, w - x1, y0, h - y1), value=0)


def remove_small_regions(mask: np.ndarray, min_area: float, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes ("holes") or drop islands ("islands") smaller than `min_area` pixels
    (8-connected); with islands, the largest one stays if all are small. Returns the mask
    and whether it changed."""
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    n, labels, stats, _ = cv2.connectedComponentsWithStats((holes ^ mask).astype(np.uint8), 8)
    sizes = stats[1:, -1]
    small = [i + 1 for i, s in enumerate(sizes) if s < min_area]
    if not small:
        return mask, False
    fill = [0] + small
    if not holes:
        fill = [i for i in range(n) if i not in fill] or [int(np.argmax(sizes)) + 1]
    return np.isin(labels, fill), True


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    """Indices kept by box NMS, best score first (one class)."""
    return batched_nms(boxes.float(), scores, torch.zeros(len(boxes), device=boxes.device), iou)
