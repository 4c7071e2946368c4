"""PMG-SAM's three files: the Hiera checkpoint (timm format), the official `u2net.pth`,
and the trained part as a plugin (engines/files/plugins.py: safetensors + metadata).

A plugin's metadata binds it to both frozen files: `backbone_arch` names the Hiera
variant and the two input sizes, `backbone_checkpoint` is the Hiera file's identity
(what the plugin index pairs it with), `u2net_checkpoint` the U²-Net file's; `config`
and `hiera` hold what is needed to rebuild the architecture. Its tensors are
`PmgSamHead.state_dict()` (fusion.*, refiner.*, neck.*, decoder.*).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from engines.files.checkpoints import checkpoint_identity
from engines.files.plugin_index import plugin_beside
from engines.pmg_sam.config import PmgSamConfig
from engines.pmg_sam.hiera import HIERA_B_PLUS, HieraSpec
from engines.types import CheckpointError

ENGINE = "pmg-sam"
U2NET_FILE = "u2net.pth"


def backbone_arch(hiera: HieraSpec, cfg: PmgSamConfig) -> str:
    stages = "-".join(map(str, hiera.stages))
    return (f"hiera:{hiera.variant}:{hiera.embed_dim}x{stages}@{cfg.image_size}"
            f"+u2net@{cfg.u2net_size}")


def train_hint(backbone: str | Path) -> str:
    return (f"train one on this Hiera file and u2net.pth with `annotator train pmg-sam "
            f"--backbone {backbone}` and pass it as the plugin")


def save_pmg_plugin(path: str | Path, head, *, hiera_path: str | Path, u2net_path: str | Path,
                    hiera: HieraSpec = HIERA_B_PLUS, **meta: Any) -> Path:
    """Write a trained PmgSamHead bound to the two frozen files it was trained on."""
    from engines.files.plugins import save_plugin
    cfg: PmgSamConfig = head.cfg
    spec = replace(hiera, img_size=cfg.image_size)
    return save_plugin(path, head.state_dict(), engine=ENGINE, backbone_arch=backbone_arch(spec, cfg),
                       backbone_checkpoint=checkpoint_identity(hiera_path),
                       u2net_checkpoint=checkpoint_identity(u2net_path),
                       config=cfg.to_dict(), hiera=_spec_dict(spec), **meta)


def _spec_dict(spec: HieraSpec) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items()}


def plugin_architecture(record: Mapping[str, Any], path: str | Path) -> tuple[PmgSamConfig, HieraSpec]:
    """The config and Hiera variant a plugin's metadata describes (CheckpointError if
    absent or inconsistent with its `backbone_arch`)."""
    if not isinstance(record.get("config"), dict) or not isinstance(record.get("hiera"), dict):
        raise CheckpointError(f"plugin {path} has no PMG-SAM architecture record (config, hiera): "
                              "it was not written by save_pmg_plugin")
    cfg = PmgSamConfig.from_dict(record["config"], source=f"plugin {path}")
    try:
        spec = HieraSpec(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in record["hiera"].items()})
    except TypeError as exc:
        raise CheckpointError(f"plugin {path}: invalid Hiera record ({exc})") from None
    if spec.channels != cfg.hiera_channels or spec.img_size != cfg.image_size:
        raise CheckpointError(f"plugin {path}: its Hiera record ({spec.channels} at {spec.img_size}) "
                              f"does not match its config ({cfg.hiera_channels} at {cfg.image_size})")
    if record.get("backbone_arch") != backbone_arch(spec, cfg):
        raise CheckpointError(f"plugin {path}: backbone_arch {record.get('backbone_arch')!r} does not "
                              f"match its architecture record ({backbone_arch(spec, cfg)!r})")
    return cfg, spec


def check_backbones(record: Mapping[str, Any], plugin: str | Path, hiera_path: str | Path,
                    u2net_path: str | Path) -> tuple[str, str]:
    """The two frozen files' identities, if they are the ones the plugin was trained on;
    otherwise one CheckpointError saying which file differs."""
    hiera_id, u2_id = checkpoint_identity(hiera_path), checkpoint_identity(u2net_path)
    for role, file, ident, key in (("Hiera", hiera_path, hiera_id, "backbone_checkpoint"),
                                   ("U²-Net", u2net_path, u2_id, "u2net_checkpoint")):
        if record.get(key) != ident:
            raise CheckpointError(
                f"plugin {plugin} was trained for another backbone: its {role} file had identity "
                f"{record.get(key)}, but {file} has {ident}; a plugin only makes sense on the "
                f"frozen weights it was trained with ({train_hint(hiera_path)})")
    return hiera_id, u2_id


def find_plugin(backbone: str | Path, directories: list[str | Path] | None = None) -> Path | None:
    """The newest pmg-sam plugin trained on this very Hiera file (plugin_index.plugin_beside)."""
    return plugin_beside(backbone, ENGINE, directories)
