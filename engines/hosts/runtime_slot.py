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


def encoder_slot(module: nn.Module, engine, side: int, runtime: str | None) -> EncoderSlot | None:
    if engine.device.type != "cpu":
        return None
    family_arch = engine.checkpoint_key.rpartition(":")[0]          # "sam:vit_b", "sam2:tiny"
    # tiny architectures share a name: their size tells them apart
    params = sum(p.numel() for p in module.parameters())
    return EncoderSlot(module, (1, 3, side, side), arch_key=f"{family_arch}@{side}:{params}",
                       model_key=f"{engine.checkpoint_key}@{side}|{'exact' if engine.exact else 'fast'}",
                       runtime=runtime, exact=engine.exact)
