"""A tiny random-weight open_clip CLIP (96 px, patch 16: 6² tokens, width 32, 4 blocks,
text width 32, 2 blocks, the real 49,408-token vocabulary) and a tiny SAM-MI on it, so tests
exercise the real code paths in milliseconds. Never downloads."""
from __future__ import annotations

import torch

from engines.sam_mi.config import SamMiConfig


def tiny_clip(seed: int = 0, quick_gelu: bool = True, width: int = 32, patch: int = 16,
              image_size: int = 96, layers: int = 4, embed_dim: int = 32):
    import open_clip
    torch.manual_seed(seed)
    vision = {"image_size": image_size, "layers": layers, "width": width, "patch_size": patch, "head_width": 16}
    text = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}
    return open_clip.CLIP(embed_dim, vision, text, quick_gelu=quick_gelu).eval()


def tiny_sam_mi(seed: int = 0, **kw):
    """(SamMi on a tiny config, the tiny CLIP it is built on)."""
    from engines.sam_mi.clip import DenseClip
    from engines.sam_mi.model import SamMi
    cfg = SamMiConfig.tiny(**kw)
    clip = tiny_clip(seed)
    torch.manual_seed(seed + 1)
    return SamMi(cfg, DenseClip(clip, cfg.taps)).eval(), clip
