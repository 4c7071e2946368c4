"""The copy of an image that engines see, and embeddings that answer in full-image pixels.

Every engine resizes its input to a fixed side (1024 px for the SAM family, 640 for the
classic engine) before encoding, so a 20000x20000 photo decoded in full only to be shrunk
cost gigabytes for nothing. Images whose long side is above ENGINE_MAX_SIDE are decoded
straight to that side (JPEG in the DCT domain, see annotator.core.images); the engine
then makes its own final resize from that copy, as it would from the original. The
embedding records the *full* image size, so prompts are given and masks come back in
full-resolution pixels: decoders need only the embedding (engines.types.Embedding), and
they scale by `image_size`, not by the pixels they were shown.
"""
from __future__ import annotations

import dataclasses
import os

from annotator.core.images import ScaledImage, load_scaled_image
from engines.types import Embedding, EngineError

# Twice the largest input side of the engines we ship (1024): each engine still does
# its own last 2:1 (or more) resize, which keeps its results those of the full image.
ENGINE_MAX_SIDE = 2048


def load_engine_copy(path: str | os.PathLike[str]) -> ScaledImage:
    """The pixels an engine needs (long side <= ENGINE_MAX_SIDE) and the full size."""
    return load_scaled_image(path, ENGINE_MAX_SIDE)


def at_full_size(emb: Embedding, full_size: tuple[int, int]) -> Embedding:
    """`emb` answering in the full image's pixels (a shallow copy; features shared)."""
    full_size = (int(full_size[0]), int(full_size[1]))
    return emb if tuple(emb.image_size) == full_size else dataclasses.replace(
        emb, image_size=full_size)


def check_copy_is_enough(engine_side: int, copy_shape: tuple[int, int],
                         full_size: tuple[int, int]) -> None:
    """An engine whose input is larger than the reduced copy would lose detail: refuse
    (a new engine with a bigger input needs ENGINE_MAX_SIDE raised)."""
    if max(copy_shape) < max(full_size) and engine_side > max(copy_shape):
        raise EngineError(f"the engine's input side ({engine_side} px) is larger than the "
                          f"{max(copy_shape)}-px copy engines get; raise ENGINE_MAX_SIDE")
