"""IP-SAM at test size: `IpSamConfig.tiny()` on `engines.hosts.tiny.tiny_sam2(128)`
(the real `sam2` Hiera trunk, FPN neck and prompt encoder, shrunk; random weights)."""
from __future__ import annotations

import torch

from engines.ip_sam.config import IpSamConfig
from engines.ip_sam.model import IpSam


def tiny_ip_sam(seed: int = 0, **overrides) -> IpSam:
    from engines.hosts.tiny import tiny_sam2
    cfg = IpSamConfig.tiny(**overrides)
    sam2 = tiny_sam2(img_size=cfg.image_size, seed=seed)
    torch.manual_seed(seed + 1)
    return IpSam.from_sam2(cfg, sam2)
