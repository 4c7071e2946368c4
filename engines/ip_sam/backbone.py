"""SAM 2's frozen parts as IP-SAM uses them (spec §2.1, §2.2): the image encoder (Hiera
trunk + FPN neck, `scalp=1`: F_s4, F_s8, F_s16) and the prompt encoder, taken from a
`sam2` model built by the hosts (`engines.hosts.sam2` for the official sizes,
`engines.hosts.tiny.tiny_sam2` for the test size); the memory modules and SAM 2's own
mask decoder are dropped. Also: which SAM 2 a state dict is, SAM 2's preprocessing
(stretch to S x S, ImageNet mean / std), and a shapes-only (meta-device) build of a
full-size model for parameter counts.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from engines.hosts.detect import guess_sam2_arch, is_sam2_state
from engines.types import CheckpointError

TINY = "tiny"   # any SAM 2 state dict of a non-official shape (engines.hosts.tiny)


def sam2_arch_of(state: Mapping[str, torch.Tensor]) -> str | None:
    """hiera_t / hiera_s / hiera_b+ / hiera_l, "tiny" for another SAM 2 shape, None if
    the state dict is not a SAM 2 one."""
    if not is_sam2_state(state):
        return None
    return guess_sam2_arch(state) or TINY


def build_sam2(arch: str, image_size: int) -> nn.Module:
    """A randomly initialised SAM 2 model of `arch` at `image_size` (CPU, eval)."""
    if arch == TINY:
        from engines.hosts.tiny import tiny_sam2
        with torch.random.fork_rng(devices=[]):   # tiny_sam2 seeds torch
            return tiny_sam2(img_size=image_size)
    from engines.hosts.sam2 import build_sam2_architecture
    model = build_sam2_architecture(arch)
    if int(model.image_size) != image_size:
        raise CheckpointError(f"SAM 2 {arch} runs at {model.image_size} px, but the IP-SAM plugin "
                              f"was built for {image_size} px")
    return model


@contextmanager
def meta_parameters() -> Iterator[None]:
    """Modules built inside get their parameters on the meta device (shapes, no memory),
    whatever their constructors compute on the way (Hiera calls `.item()`, so the plain
    `torch.device("meta")` context cannot build it)."""
    register = nn.Module.register_parameter

    def on_meta(module, name, param):
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    nn.Module.register_parameter = on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def meta_sam2(arch: str) -> nn.Module:
    """An official-size SAM 2 (its yaml config) with meta parameters: for counting."""
    import sam2  # noqa: F401  (its import initialises hydra's config module)
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from engines.hosts.sam2 import SAM2_CONFIGS
    cfg = compose(config_name=SAM2_CONFIGS[arch])
    OmegaConf.resolve(cfg)
    with meta_parameters():
        return instantiate(cfg.model, _recursive_=True)


class Sam2Preprocess:
    """H x W x 3 uint8 RGB -> (1, 3, S, S) float: SAM2ImagePredictor's transforms."""

    def __init__(self, side: int):
        from sam2.utils.transforms import SAM2Transforms
        self.side = side
        self.transforms = SAM2Transforms(resolution=side, mask_threshold=0.0)

    def __call__(self, image: np.ndarray, device: torch.device) -> torch.Tensor:
        return self.transforms(image)[None].to(device)
