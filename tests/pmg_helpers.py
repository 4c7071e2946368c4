"""PMG-SAM's three files at test size, installed under the catalogue's names: a real
tiny timm Hiera file, a stand-in u2net.pth (its bytes only give it an identity; the
full-size U²-Net builder is monkeypatched to a tiny one, as the SAM tests patch
`build_sam_architecture`) and a plugin trained on both (random weights)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from safetensors.torch import save_file

from engines.files import catalogue
from engines.pmg_sam import HieraSpec, PmgSamConfig, PmgSamHead, U2NetEncoder, build_timm_hiera, save_pmg_plugin

# six RSU-4F stages with TinyU2's channels (spec §7): PmgSamConfig.tiny()'s u2_channels
TINY_U2_STAGES = (("4F", 3, 4, 4), ("4F", 4, 4, 8), ("4F", 8, 4, 8), ("4F", 8, 4, 16),
                  ("4F", 16, 4, 16), ("4F", 16, 4, 16))
HIERA_SPEC = HieraSpec.tiny()


def tiny_u2net(path=None, state=None) -> U2NetEncoder:
    torch.manual_seed(1)
    return U2NetEncoder(TINY_U2_STAGES)


def patch_tiny_u2net(monkeypatch) -> None:
    """Every loader of the official u2net.pth builds the tiny encoder instead."""
    monkeypatch.setattr("engines.pmg_sam.engine.load_u2net_encoder", tiny_u2net)
    if importlib.util.find_spec("training.adapters.pmg_sam") is not None:
        monkeypatch.setattr("training.adapters.pmg_sam.load_u2net_encoder", tiny_u2net)


def catalogue_path(arch: str, folder: Path) -> Path:
    entry = next(e for e in catalogue.load_catalogue() if e.engine == "pmg-sam" and e.arch == arch)
    return catalogue.model_path(entry, folder)


def write_hiera(path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    state = build_timm_hiera(HIERA_SPEC, img_size=HIERA_SPEC.pretrain_img_size).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def write_u2net(path: Path, tag: bytes = b"u2net") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tag * 1000)
    return path


def write_plugin(path: Path, hiera: Path, u2net: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    head = PmgSamHead(PmgSamConfig.tiny())
    return save_pmg_plugin(path, head, hiera_path=hiera, u2net_path=u2net, hiera=HIERA_SPEC)


def install_pmg(folder: Path, *, hiera: bool = True, u2net: bool = True, plugin: bool = True
                ) -> dict[str, Path]:
    """The files a user's models folder holds for pmg-sam (those asked for)."""
    h, u = catalogue_path("hiera_b+", folder), catalogue_path("u2net", folder)
    write_hiera(h)
    write_u2net(u)
    files = {"hiera": h, "u2net": u}
    if plugin:
        files["plugin"] = write_plugin(folder / "plugins" / "pmg-sam" / "pmg.safetensors", h, u)
    if not hiera:
        h.unlink()
    if not u2net:
        u.unlink()
    return files
