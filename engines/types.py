"""The engine layer's vocabulary: prompts in, predictions out, embeddings in between.

Coordinates are always original-image pixels (x right, y down); engines map them to
their own input resolution internally.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import numpy as np


class EngineError(Exception):
    """Base class for errors the engine layer reports to users (clear, one line)."""


class PromptError(EngineError, ValueError):
    """A prompt that cannot be answered: empty, malformed, or outside the image."""


class CheckpointError(EngineError):
    """A checkpoint file that is missing, truncated, unsafe or of another architecture."""


class ImageError(EngineError, ValueError):
    """An image array the engines cannot take (wrong dtype, shape or channels)."""


class OptionsError(EngineError, ValueError):
    """Options of a request that are out of range or unknown (e.g. a grid of 0 points)."""


class CancelledError(EngineError):
    """A long request (a proposal run) was cancelled between two of its batches."""


@dataclass(frozen=True)
class Prompt:
    points: np.ndarray | None = None        # (N, 2) float, x, y in image pixels
    labels: np.ndarray | None = None        # (N,) int, 1 = object, 0 = background
    box: np.ndarray | None = None           # (4,) x0, y0, x1, y1 in image pixels
    mask_logits: np.ndarray | None = None   # (1, h, w) low-res logits of the previous answer
    text: str | None = None
    multimask: bool | None = None           # None: engine decides (True for one point)

    @property
    def is_empty(self) -> bool:
        return (self.points is None or len(self.points) == 0) and self.box is None \
            and self.mask_logits is None and not self.text


@dataclass
class Prediction:
    masks: np.ndarray            # (K, H, W) bool at original image size, best first
    scores: np.ndarray           # (K,) predicted IoU (or engine's confidence)
    low_res_logits: np.ndarray   # (K, h, w) float32; feed masks[i]'s back as Prompt.mask_logits
    engine: str
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. SAM 2 object score

    @property
    def best(self) -> np.ndarray:
        return self.masks[0]


@dataclass
class Proposals:
    """N object instances found in one image with no prompt ("auto") or from typed class
    names ("text"), best first. Unlike `Prediction.masks` (K candidates for ONE object),
    each row here is a different object."""
    masks: np.ndarray            # (N, H, W) bool at original image size
    scores: np.ndarray           # (N,) float32 confidence, higher is better (AMG: predicted IoU)
    boxes: np.ndarray            # (N, 4) float32 x0, y0, x1, y1 in image pixels (mask's extent)
    engine: str
    class_names: list[str | None] | None = None   # (N,) a class per instance, text engines
    class_scores: np.ndarray | None = None       # (N, C) score of each of `classes`
    classes: tuple[str, ...] = ()                # the names `class_scores` columns refer to
    sources: list[dict[str, Any]] = field(default_factory=list)  # (N,) what produced each,
    #                      e.g. {"point": [x, y], "crop": [x0, y0, x1, y1], "stability": s}
    extras: dict[str, Any] = field(default_factory=dict)         # run-level facts, timings

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def empty(cls, image_size: tuple[int, int], engine: str, **kw: Any) -> "Proposals":
        h, w = image_size
        return cls(np.zeros((0, h, w), bool), np.zeros(0, np.float32),
                   np.zeros((0, 4), np.float32), engine, **kw)


@dataclass
class Embedding:
    """What an encoder computed for one image; decoders need only this (and a prompt)."""
    backbone_key: str                       # engines with the same key share an embedding
    image_size: tuple[int, int]             # (H, W) of the original image
    input_size: tuple[int, int]             # (h, w) after resizing, before padding
    features: dict[str, Any]                # name -> torch.Tensor (or np.ndarray for classic)
    image: np.ndarray | None = None         # kept only by engines that need pixels (classic)
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        total = 0 if self.image is None else int(self.image.nbytes)
        for value in self.features.values():
            if hasattr(value, "element_size"):
                total += int(value.element_size() * value.nelement())
            else:
                total += int(np.asarray(value).nbytes)
        return total


@runtime_checkable
class Engine(Protocol):
    name: str
    backbone_key: str    # e.g. "sam:vit_b:<checkpoint id>"; cache key component

    def embed(self, image: np.ndarray) -> Embedding: ...

    def predict(self, emb: Embedding, prompt: Prompt) -> Prediction: ...


Cancel = Callable[[], bool]   # polled between batches; True: stop with CancelledError


@runtime_checkable
class Proposer(Protocol):
    """An engine that finds objects itself: "auto" (no prompt) or "text" (options carry
    `classes`, the typed names). Options are validated by the proposer (OptionsError)."""
    name: str
    backbone_key: str

    def embed(self, image: np.ndarray) -> Embedding: ...

    def propose(self, emb: Embedding, options: Mapping[str, Any] | None = None, *,
                cancel: Cancel | None = None,
                image: np.ndarray | Callable[[], np.ndarray] | None = None) -> Proposals:
        """`image`: the pixels `emb` was made from (or a function reading them), for
        proposers that look at crops again; most need only `emb`."""
