"""Feature cache for training: the frozen encoder runs once per image, ever.

Training a plugin on a frozen SAM / SAM 2 spends nearly all of its time in the image
encoder if it is re-run every epoch. This wraps the engines' `EmbeddingCache` (memory LRU
+ verified safetensors files on disk) with training's key: the image's content hash
(so an augmented variant is a different image), the engine and its backbone identity
(architecture + checkpoint identity) and the input side. Features are stored in half
precision (they are activations of a frozen network; fp16 keeps ~3 significant digits,
and halves the disk and memory footprint) and handed back as float32.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from engines.files import CacheKey, EmbeddingCache
from engines.types import Embedding

from .api import PluginAdapter


@dataclass
class FeatureStats:
    encoder_calls: int = 0      # images the encoder actually ran on
    hits: int = 0


class FeatureCache:
    def __init__(self, adapter: PluginAdapter, directory: str | Path | None, memory_mb: float = 2048,
                 dtype: torch.dtype = torch.float16):
        self.adapter = adapter
        # the engine is part of the key: adapters on one backbone may keep different
        # features (HQ-SAM also keeps an early ViT layer)
        self.backbone = f"{adapter.engine}:{adapter.backbone_identity()}"
        self.dtype = dtype
        disk = directory is not None
        self.cache = EmbeddingCache(memory_mb=memory_mb, disk_dir=directory, disk=disk)
        self.stats = FeatureStats()

    def key(self, digest: str) -> CacheKey:
        return CacheKey(digest, f"train:{self.backbone}", int(self.adapter.side))

    def get(self, digest: str, load: Callable[[], np.ndarray]) -> dict[str, torch.Tensor]:
        """Features of the image with content hash `digest` (each without the batch
        dimension); `load()` gives its (H, W, 3) uint8 pixels, called only on a miss."""
        emb, source = self.cache.get_or_compute(self.key(digest), lambda: self._encode(load()))
        if source == "computed":
            self.stats.encoder_calls += 1
        else:
            self.stats.hits += 1
        return {k: v.float() for k, v in emb.features.items()}

    def warm(self, items, progress: Callable[[int, int], None] | None = None) -> None:
        """Encode every image of `items` (TrainItems) not cached yet, reporting progress.
        Each image is decoded once: its content hash comes from the same pixels."""
        unique = list({item.source if item.source is not None else id(item): item
                       for item in items}.values())
        for i, item in enumerate(unique):
            image = item.load_image() if item._key is None else None
            if self.cache.get(self.key(item.image_key)) is None:
                self.get(item.image_key, (lambda image=image: image) if image is not None
                         else item.load_image)
            if progress:
                progress(i + 1, len(unique))

    @torch.no_grad()
    def _encode(self, image: np.ndarray) -> Embedding:
        adapter = self.adapter
        x = adapter.preprocess(image)[None]
        feats = adapter.encode(x)
        frame = adapter.frame(tuple(image.shape[:2]))
        return Embedding(f"train:{self.backbone}", frame.image_size, frame.input_size,
                         {k: v[0].detach().to("cpu", self.dtype).contiguous() for k, v in feats.items()})
