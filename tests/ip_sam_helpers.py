"""IP-SAM's two files at test size: a tiny SAM 2 checkpoint (engines.hosts.tiny.tiny_sam2
at 128 px, random weights) and an ip-sam plugin bound to it (LoRA + heads of
`IpSamConfig.tiny()`, random weights). The SAM 2 file is not a catalogued size, so the
router finds it only when pinned (`checkpoints={"sam2": path}`, the model picker's pin);
the plugin goes where `annotator train ip-sam` writes it, the models folder's
plugins/ip-sam/."""
from __future__ import annotations

from pathlib import Path

import torch

from engines.hosts.tiny import tiny_sam2
from engines.ip_sam import IpSamConfig, save_ip_plugin, tiny_ip_sam

TINY_CONFIG = IpSamConfig.tiny()


def write_sam2(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_sam2(img_size=TINY_CONFIG.image_size, seed=seed).state_dict(), path)
    return path


def write_ip_plugin(path: Path, sam2: Path, *, seed: int = 0, foreground: float = 0.0, **overrides) -> Path:
    """A random-weight plugin on `sam2`; `foreground` > 0 lifts the final logits by that
    much (the refinement head's output bias), so the map has components to propose."""
    model = tiny_ip_sam(seed=seed, **overrides)
    if foreground and model.heads.refine is not None:
        with torch.no_grad():
            model.heads.refine.out.bias.fill_(float(foreground))
    return save_ip_plugin(path, model, sam2_path=sam2, arch="tiny")


def install_ip_sam(folder: Path, *, plugin: bool = True, foreground: float = 3.0) -> dict[str, Path]:
    """A models folder's ip-sam files: the tiny SAM 2 (pin it) and, if asked, a plugin."""
    files = {"sam2": write_sam2(folder / "sam2_tiny_test.pt")}
    if plugin:
        files["plugin"] = write_ip_plugin(folder / "plugins" / "ip-sam" / "ip.safetensors",
                                          files["sam2"], foreground=foreground)
    return files
