"""Input and output geometry (spec §2.1, §4): resize the longest side to S keeping the
aspect ratio (SAM's ResizeLongestSide rounding, at least 1 px a side), normalise with
ImageNet mean/std, zero-pad bottom/right to S x S; and the inverse for R x R logits:
upsample to S x S, crop the valid h' x w', resize to the original H x W."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resized_shape(h: int, w: int, side: int) -> tuple[int, int]:
    """SAM's get_preprocess_shape, floored at 1 px (a 1 x 5000 strip stays 1 px tall)."""
    scale = side / max(h, w)
    return max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))


def prepare(image: np.ndarray, side: int, device: torch.device | str = "cpu"
            ) -> tuple[torch.Tensor, tuple[int, int]]:
    """H x W x 3 uint8 RGB -> ((1, 3, side, side) normalised padded float32, (h', w'))."""
    h, w = image.shape[:2]
    nh, nw = resized_shape(h, w, side)
    x = torch.as_tensor(image, device=device).permute(2, 0, 1)[None].float() / 255.0
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False,
                          antialias=nh < h or nw < w)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return F.pad(x, (0, side - nw, 0, side - nh)), (nh, nw)


def restore(logits: torch.Tensor, input_size: tuple[int, int], image_size: tuple[int, int],
            side: int) -> torch.Tensor:
    """(B, C, R, R) logits -> (B, C, H, W): x (side / R) bilinear, unpad, resize to H x W."""
    x = F.interpolate(logits.float(), size=(side, side), mode="bilinear", align_corners=False)
    x = x[..., :input_size[0], :input_size[1]]
    return F.interpolate(x, size=tuple(image_size), mode="bilinear", align_corners=False)
