"""Input geometry, frozen encoders and prompt encoding shared by the adapters: a SAM host
(`segment_anything` or `segment_anything_hq`: the same resize, normalisation, padding and
coordinate frame as `SamPredictor`) and a SAM 2 host (as `Sam2Engine`), so what trains
is what the engine runs."""
from __future__ import annotations

import numpy as np
import torch

from ..api import InputFrame, TrainPrompt


class HostGeometry:
    """Mixin for adapters that hold a `host` (SamHost / Sam2Host): their input frame and
    preprocessing are the host engine's."""

    @property
    def side(self) -> int:
        return self.host.side

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

    def frame(self, image_size: tuple[int, int]) -> InputFrame:
        h, w = self.transform.get_preprocess_shape(image_size[0], image_size[1], self.side)
        return InputFrame(tuple(image_size), (int(h), int(w)), self.side)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        resized = self.transform.apply_image(image)
        x = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None]
        device = self.sam.pixel_mean.device
        return self.sam.preprocess(x.to(device).float())[0]

    def encode_prompt(self, prompt: TrainPrompt, mask_scale: float = 1.0):
        """One TrainPrompt (input-frame pixels) -> the frozen prompt encoder's (sparse, dense)."""
        device = self.sam.pixel_mean.device
        points = box = masks = None
        if prompt.points is not None and len(prompt.points):
            points = (torch.as_tensor(np.asarray(prompt.points), dtype=torch.float, device=device)[None],
                      torch.as_tensor(np.asarray(prompt.labels), dtype=torch.int, device=device)[None])
        if prompt.box is not None:
            box = torch.as_tensor(np.asarray(prompt.box), dtype=torch.float, device=device)[None]
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
        side = model.image_size
        self.feat_sizes = [(side // 4, side // 4), (side // 8, side // 8), (side // 16, side // 16)]

    @property
    def side(self) -> int:
        return int(self.model.image_size)

    def frame(self, image_size: tuple[int, int]) -> InputFrame:
        return InputFrame(tuple(image_size), (self.side, self.side), self.side)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        return self.transforms(np.ascontiguousarray(image)).to(self.model.no_mem_embed.device)

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """As Sam2Engine.embed: backbone, no-memory embedding, per-level reshape."""
        m = self.model
        out = m.forward_image(images.to(m.no_mem_embed.device, torch.float32))
        _, feats, _, _ = m._prepare_backbone_features(out)
        if m.directly_add_no_mem_embed:
            feats[-1] = feats[-1] + m.no_mem_embed
        b = images.shape[0]
        maps = [f.permute(1, 2, 0).reshape(b, -1, *size) for f, size in zip(feats, self.feat_sizes)]
        return {"image_embed": maps[-1], "high_res_0": maps[0], "high_res_1": maps[1]}

    def encode_prompt(self, prompt: TrainPrompt, mask_scale: float = 1.0):
        """Box corners (labels 2, 3) then points, in input-frame pixels -> (sparse, dense)."""
        device = self.model.no_mem_embed.device
        coords, labels = [], []
        if prompt.box is not None:
            coords.append(np.asarray(prompt.box, dtype=np.float32).reshape(2, 2))
            labels.append(np.array([2, 3]))
        if prompt.points is not None and len(prompt.points):
            coords.append(np.asarray(prompt.points, dtype=np.float32).reshape(-1, 2))
            labels.append(np.asarray(prompt.labels).reshape(-1))
        points = None
        if coords:
            points = (torch.as_tensor(np.concatenate(coords), device=device)[None],
                      torch.as_tensor(np.concatenate(labels), dtype=torch.int, device=device)[None])
        masks = None
        if prompt.mask is not None:
            masks = torch.as_tensor(np.asarray(prompt.mask), dtype=torch.float, device=device)[None, None]
            masks = masks * mask_scale
        return self.model.sam_prompt_encoder(points=points, boxes=None, masks=masks)
