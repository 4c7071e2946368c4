"""Proposals image by image outside the window (batch auto-labelling): the routed
proposer, images read as the engines get them (annotator.core.engine_image), and the
same embedding cache the window uses, so an image embedded once is not embedded again.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from annotator.core.engine_image import at_full_size, check_copy_is_enough, load_engine_copy
from annotator.core.errors import CoreError
from annotator.core.images import load_image
from annotator.core.service import model_identity
from annotator.core.service_prefetch import encoder_input_side
from engines.files import CacheKey, EmbeddingCache, image_digest
from engines.types import EngineError

# resolve(task, engine name or None) -> engines.router.Routed
Resolve = Callable[[str, "str | None"], Any]


def router_resolver(router: Any) -> Resolve:
    return lambda task, name: router.route(task, engine=name)


class ImageProposer:
    """One routed proposer for a whole batch. EngineError (unknown engine, none
    installed, an engine that cannot propose) is raised here, before any image."""

    def __init__(self, resolve: Resolve, cache: EmbeddingCache, *, task: str = "auto",
                 engine: str | None = None, classes: tuple[str, ...] = (),
                 options: dict[str, Any] | None = None):
        self.routed = resolve(task, engine)
        self.engine = self.routed.engine
        self.name = str(self.routed.name)
        if not callable(getattr(self.engine, "propose", None)):
            raise EngineError(f"engine {self.name} cannot propose objects ({task}); "
                              "choose an engine made for it (annotator models)")
        self.cache, self.task = cache, task
        self.options = dict(options or {})
        if task == "text":
            self.options["classes"] = list(classes)

    @property
    def model(self) -> str:
        """The model identity recorded with every candidate: backbone key, plugin file."""
        return model_identity(self.routed)

    @property
    def files(self) -> dict[str, str]:
        out = {}
        for what in ("checkpoint", "plugin"):
            path = getattr(self.routed, what, None)
            if path is not None:
                out[what] = os.fspath(path.name)
        return out

    def propose(self, path: str | os.PathLike, cancel: Callable[[], bool] | None = None) -> Any:
        """The proposals for one image file (ImageLoadError when it cannot be read)."""
        copy = load_engine_copy(path)
        side = encoder_input_side(self.engine)
        check_copy_is_enough(side, copy.pixels.shape[:2], copy.full_size)
        key = CacheKey(image_digest(copy.pixels), str(self.engine.backbone_key), side)
        emb, _ = self.cache.get_or_compute(key, lambda: self.engine.embed(copy.pixels))
        emb = at_full_size(emb, copy.full_size)

        def full_pixels():
            if tuple(copy.pixels.shape[:2]) == tuple(copy.full_size):
                return copy.pixels
            pixels = load_image(path)
            if tuple(pixels.shape[:2]) != tuple(copy.full_size):
                raise CoreError(f"{path}: the image changed while it was being labelled")
            return pixels

        return self.engine.propose(emb, dict(self.options), cancel=cancel, image=full_pixels)
