"""A small cacheable adapter for the trainer's tests: a tiny SAM whose mask decoder
trains on top of its frozen encoder (the Stable-SAM paper's "DT-SAM" baseline), plus
in-memory data. Counts encoder calls so tests can prove the feature cache works."""
from __future__ import annotations

import numpy as np
import torch

from engines.hosts.tiny import tiny_sam
from training.adapters.sam_host import HostGeometry, SamHost
from training.api import AdapterOutput, PluginAdapter
from training.items import items_from_arrays


class DecoderAdapter(HostGeometry, PluginAdapter):
    engine = "test-decoder"

    def __init__(self, seed: int = 0, img_size: int = 64):
        super().__init__()
        self.model = tiny_sam(img_size=img_size, embed_dim=32, depth=2, prompt_dim=32, seed=seed)
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in self.model.mask_decoder.parameters():
            p.requires_grad_(True)
        self.host = SamHost(self.model)
        self.encoder_calls = 0

    def encode(self, images):
        self.encoder_calls += len(images)
        return {"image_embed": self.model.image_encoder(images)}

    @property
    def trainable(self):
        return self.model.mask_decoder

    def backbone_identity(self):
        return "sam:test-tiny:0"

    def forward(self, features, prompts):
        pe = self.model.prompt_encoder.get_dense_pe()
        outs, ious = [], []
        for i, prompt in enumerate(prompts):
            sparse, dense = self.host.encode_prompt(prompt)
            low, iou = self.model.mask_decoder(features["image_embed"][i:i + 1], pe, sparse, dense,
                                               multimask_output=False)
            outs.append(low)
            ious.append(iou[:, 0])
        return AdapterOutput(torch.cat(outs), torch.cat(ious))

    def default_recipe(self):
        return {"optimizer": "adam", "lr": 3e-3, "schedule": "constant",
                "prompt_mix": {"tight-box": 1, "points-1": 1}}


def disc_items(n_images: int = 2, size: int = 48, seed: int = 0):
    """Images with 1-2 textured discs each; one item per disc."""
    rng = np.random.default_rng(seed)
    items = []
    yy, xx = np.mgrid[:size, :size]
    for _ in range(n_images):
        image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        masks = []
        for _ in range(int(rng.integers(1, 3))):
            cx, cy, r = rng.integers(12, size - 12, 2).tolist() + [int(rng.integers(5, 10))]
            m = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
            image[m] = rng.integers(150, 255, 3, dtype=np.uint8)
            masks.append(m)
        items += items_from_arrays(image, masks)
    return items
