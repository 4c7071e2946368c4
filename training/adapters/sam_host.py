"""Input geometry, frozen encoders and prompt encoding shared by the adapters: a SAM host
(`segment_anything` or `segment_anything_hq`: the same resize, normalisation, padding and
coordinate frame as `SamPredictor`) and a SAM 2 host (as `Sam2Engine`). The geometry is
the engines' own functions (engines.hosts.geometry), so what trains is what the engine
runs."""
from __future__ import annotations

import numpy as np
import torch

from engines.hosts import sam2_feature_maps, sam2_prompt_points, sam_preprocess, sam_prompt_inputs

from ..api import InputFrame, TrainPrompt


class HostGeometry:
    """Mixin for adapters that hold a `host` (SamHost / Sam2Host): their input frame and
    preprocessing are the host engine's."""

    @property
    def side(self) -> int:
        return self.host.side

    @property
    def mask_prompt_side(self) -> int:
        return getattr(self.host, "mask_prompt_side", self.host.side // 4)

    def frame(self, image_size: tuple[int, int]) -> InputFrame:
        return self.host.frame(image_size)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        return self.host.preprocess(image)


class SamHost:
    """Wraps a `Sam` (or HQ `Sam`) model: frame, preprocess and per-prompt encoding."""

    def __init__(self, sam):
        from segment_anything.utils.transforms import ResizeLongestSide
        self.sam = sam
        self.transform = ResizeLongestSide(int(sam.image_encoder.img_size))

    @property
    def side(self) -> int:
        return int(self.sam.image_encoder.img_size)

    @property
    def mask_prompt_side(self) -> int:
        return 4 * int(self.sam.prompt_encoder.image_embedding_size[0])

    def frame(self, image_size: tuple[int, int]) -> InputFrame:
        h, w = self.transform.get_preprocess_shape(image_size[0], image_size[1], self.side)
        return InputFrame(tuple(image_size), (int(h), int(w)), self.side)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        return sam_preprocess(self.sam, self.transform, image, self.sam.pixel_mean.device)[1][0]

    def encode_prompt(self, prompt: TrainPrompt, mask_scale: float = 1.0):
        """One TrainPrompt (input-frame pixels) -> the frozen prompt encoder's (sparse, dense)."""
        device = self.sam.pixel_mean.device
        points, box = sam_prompt_inputs(prompt.points, prompt.labels, prompt.box, device)
        masks = None
        if prompt.mask is not None:
            masks = torch.as_tensor(np.asarray(prompt.mask), dtype=torch.float, device=device)[None, None]
            masks = masks * mask_scale
        return self.sam.prompt_encoder(points=points, boxes=box, masks=masks)


class Sam2Host:
    """SAM 2's image path as Sam2Engine runs it, batched: stretch to S x S, Hiera +
    neck features, prompts with the box as two corner points (labels 2, 3) first."""

    def __init__(self, model):
        from sam2.utils.transforms import SAM2Transforms
        self.model = model
        self.transforms = SAM2Transforms(resolution=model.image_size, mask_threshold=0.0)

    @property
    def side(self) -> int:
        return int(self.model.image_size)

    def frame(self, image_size: tuple[int, int]) -> InputFrame:
        return InputFrame(tuple(image_size), (self.side, self.side), self.side)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        return self.transforms(np.ascontiguousarray(image)).to(self.model.no_mem_embed.device)

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """As Sam2Engine.embed (engines.hosts.sam2_feature_maps), batched."""
        m = self.model
        return sam2_feature_maps(m, images.to(m.no_mem_embed.device, torch.float32))

    def encode_prompt(self, prompt: TrainPrompt, mask_scale: float = 1.0):
        """Box corners (labels 2, 3) then points, in input-frame pixels -> (sparse, dense)."""
        device = self.model.no_mem_embed.device
        points = sam2_prompt_points(prompt.points, prompt.labels, prompt.box, device)
        masks = None
        if prompt.mask is not None:
            masks = torch.as_tensor(np.asarray(prompt.mask), dtype=torch.float, device=device)[None, None]
            masks = masks * mask_scale
        return self.model.sam_prompt_encoder(points=points, boxes=None, masks=masks)
