"""The hosts' encoders behind engines/runtime's EncoderSlot (CPU only: on CUDA / MPS
the device's autocast path of engines/runtime/device.py stays)."""
from __future__ import annotations

import torch
from torch import nn

from engines.hosts.geometry import sam2_feature_maps
from engines.runtime.slot import EncoderSlot


class Sam2FeatureMaps(nn.Module):
    """SAM 2's backbone up to the decoder's inputs, as one module with tensor outputs
    (what SAM2ImagePredictor.set_image computes), so any runtime can run it whole."""
    NAMES = ("image_embed", "high_res_0", "high_res_1")

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        maps = sam2_feature_maps(self.model, x)
        return tuple(maps[name] for name in self.NAMES)


def encoder_slot(module: nn.Module, engine, side: int, runtime: str | None,
                 checkpoint_key: str | None = None) -> EncoderSlot | None:
    """`module`'s outputs are named by its NAMES (default: the one image embedding);
    `checkpoint_key`: what names the encoder's weights (default the engine's)."""
    if engine.device.type != "cpu":
        return None
    checkpoint_key = checkpoint_key or engine.checkpoint_key
    family_arch = checkpoint_key.rpartition(":")[0]          # "sam:vit_b", "sam2:tiny"
    # tiny architectures share a name: their size tells them apart
    params = sum(p.numel() for p in module.parameters())
    return EncoderSlot(module, (1, 3, side, side), arch_key=f"{family_arch}@{side}:{params}",
                       model_key=f"{checkpoint_key}@{side}|{'exact' if engine.exact else 'fast'}",
                       outputs=getattr(module, "NAMES", ("image_embed",)), runtime=runtime,
                       exact=engine.exact)
