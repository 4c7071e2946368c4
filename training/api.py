"""The contract between the trainer and the engines' trainable plugins.

Every engine that can be trained supplies a `PluginAdapter` (an nn.Module): it owns the
frozen model, its input geometry, the frozen encoder (whose output the trainer caches on
disk) and the prompt-conditioned forward that carries gradients only into the plugin.
The trainer, the evaluator and the command line know nothing else about an engine; a
new trainable engine registers an adapter factory with `@register_adapter`.

Coordinates and masks given to an adapter are in its *input frame*: the S x S padded (or
stretched) image the encoder sees, as returned by `InputFrame`. Datasets map original
image pixels into that frame with `frame.coords` / `frame.mask`.
"""
from __future__ import annotations

from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class InputFrame:
    """How an original (H, W) image maps into the model's S x S input.

    SAM: resize the longest side to S (scale sx == sy), pad bottom/right.
    SAM 2: stretch to S x S (sx != sy in general), no padding.
    """
    image_size: tuple[int, int]      # (H, W) original
    input_size: tuple[int, int]      # (h, w) resized, before padding
    side: int                        # S

    @property
    def scale_xy(self) -> tuple[float, float]:
        return self.input_size[1] / self.image_size[1], self.input_size[0] / self.image_size[0]

    def coords(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) x, y original pixels -> input-frame pixels."""
        sx, sy = self.scale_xy
        out = np.asarray(xy, dtype=np.float64).copy()
        out[..., 0] *= sx
        out[..., 1] *= sy
        return out

    def box(self, xyxy: np.ndarray) -> np.ndarray:
        return self.coords(np.asarray(xyxy, dtype=np.float64).reshape(2, 2)).reshape(4)

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """(H, W) bool -> (S, S) bool: nearest resize into input_size, zero padding."""
        import cv2
        h, w = self.input_size
        resized = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        out = np.zeros((self.side, self.side), dtype=bool)
        out[:h, :w] = resized > 0
        return out


@dataclass
class TrainPrompt:
    """One prompt for one instance, in input-frame pixels (see InputFrame)."""
    kind: str                                  # "tight-box", "noisy-box", "points", "noisy-mask", "stored", ...
    box: np.ndarray | None = None              # (4,) x0, y0, x1, y1
    points: np.ndarray | None = None           # (N, 2) x, y
    labels: np.ndarray | None = None           # (N,) 1 object / 0 background
    mask: np.ndarray | None = None             # (S/4, S/4) float 0/1 low-res mask prompt


@dataclass
class AdapterOutput:
    logits: torch.Tensor                       # (B, 1, S/4, S/4) low-res mask logits (the trained mask)
    iou_pred: torch.Tensor | None = None       # (B,) predicted IoU of `logits`, when the engine has one
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


class PluginAdapter(nn.Module, metaclass=ABCMeta):
    """Base class: subclasses set `engine`, build `self.model`, and implement the rest.

    `trainable` is the nn.Module holding exactly the parameters that train; everything
    else has requires_grad=False and is never handed to the optimiser.
    """
    engine: str = ""
    cacheable: bool = True      # False when the encoder itself trains (no feature cache)

    # --- geometry and the frozen encoder ---------------------------------------------
    @property
    @abstractmethod
    def side(self) -> int:
        """S, the side of the square input the encoder takes."""

    @property
    def mask_prompt_side(self) -> int:
        """Side of a mask prompt (SAM: 4x its embedding grid, S / 4 with 16 px patches)."""
        return self.side // 4

    @abstractmethod
    def frame(self, image_size: tuple[int, int]) -> InputFrame:
        """Where an (H, W) image lands in the S x S input."""

    @abstractmethod
    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> (3, S, S) float tensor the encoder takes."""

    @abstractmethod
    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, S, S) -> per-image features (each value's first dim is B). Frozen: the
        trainer calls it under no_grad and caches the result unless cacheable is False."""

    # --- the trainable part ----------------------------------------------------------
    @property
    @abstractmethod
    def trainable(self) -> nn.Module:
        """The module whose parameters train (everything else is frozen)."""

    @abstractmethod
    def forward(self, features: dict[str, torch.Tensor], prompts: list[TrainPrompt]) -> AdapterOutput:
        """features: one entry per prompt (the trainer repeats an image's features for
        each of its instances). Gradients reach only `trainable`."""

    @abstractmethod
    def backbone_identity(self) -> str:
        """Names the frozen weights (architecture + checkpoint identity); part of the
        feature-cache key and of the saved plugin's metadata."""

    def plugin_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.trainable.state_dict().items()}

    def load_plugin_state(self, state: dict[str, torch.Tensor]) -> None:
        self.trainable.load_state_dict(state, strict=True)

    def compute_loss(self, out: AdapterOutput, gts: torch.Tensor, loss_fn,
                     frames: list[InputFrame] | None = None) -> torch.Tensor:
        """The batch loss. `loss_fn(i, logits_i)` is the trainer's mask loss of item i
        (its sample points seeded per item); `frames` are the items' input frames (where
        the padding is). Engines with several outputs per prompt (multimask) or their own
        loss (pmg-sam) override this."""
        return sum(loss_fn(i, out.logits[i:i + 1]) for i in range(len(gts))) / len(gts)

    def item_inputs(self, item, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """Per-item tensors the forward needs besides the cached features (an engine with
        dense targets: its label map); `rng` is the item's generator at this step, seeded
        by (seed, step, item). They join `features` (stacked over the batch)."""
        return {}

    def param_groups(self, params: list, recipe: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Optimiser parameter groups with their own lr (None: one group at the recipe's
        lr); `params` are the trainable parameters."""
        return None

    # --- the data and the held-out check (defaults: one item per instance) ------------
    def prepare_items(self, items: list, *, train: bool, seed: int = 0) -> list:
        """The items the trainer iterates over, made from one item per instance
        (an engine with one target per image merges them here)."""
        return items

    def validate(self, items: list, features, seed: int = 0) -> dict[str, float]:
        """Held-out metrics of the plugin as it is now (training/validation.py's quick
        prompt protocols by default); `features(item)` gives an item's cached features."""
        from .validation import validate_adapter
        return validate_adapter(self, items, features, seed=seed)

    def export(self, path, **meta: Any):
        """Write the trained result where the engine loads it from (default: a plugin
        file, engines/files/plugins.py); returns the path written."""
        from engines.files import save_plugin
        arch, _, checkpoint = self.backbone_identity().rpartition(":")
        return save_plugin(path, self.plugin_state(), engine=self.engine, backbone_arch=arch,
                           backbone_checkpoint=checkpoint, **meta)

    # --- the engine's own recipe (defaults the command line can override) ------------
    def default_recipe(self) -> dict[str, Any]:
        return {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
                "prompt_mix": {"tight-box": 1, "points": 1, "noisy-mask": 1}}


AdapterFactory = Callable[..., PluginAdapter]
_ADAPTERS: dict[str, AdapterFactory] = {}


def register_adapter(engine: str):
    """`@register_adapter("hq-sam")` on a factory `(backbone: str, **options) -> PluginAdapter`;
    `backbone` is a SAM / SAM 2 checkpoint path."""
    def deco(factory: AdapterFactory) -> AdapterFactory:
        _ADAPTERS[engine] = factory
        return factory
    return deco


def trainable_engines() -> list[str]:
    _load_builtin()
    return sorted(_ADAPTERS)


def build_adapter(engine: str, backbone: str, **options) -> PluginAdapter:
    _load_builtin()
    if engine not in _ADAPTERS:
        from engines.types import EngineError
        raise EngineError(f"engine {engine!r} has no trainable plugin; trainable engines: "
                          f"{', '.join(sorted(_ADAPTERS)) or 'none'}")
    return _ADAPTERS[engine](backbone, **options)


def _load_builtin() -> None:
    import importlib

    from engines import manifest
    for module in (info.adapter for info in manifest.ENGINES if info.adapter):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:   # a real import error inside an adapter module
                raise
