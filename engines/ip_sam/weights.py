"""IP-SAM's plugin file (engines/files/plugins.py: safetensors + metadata): the LoRA
factors (`lora.blocks.{i}.attn.{qkv,proj}.lora_{A,B}`) and the heads' state dict
(`heads.spg.*`, `heads.psg.*`, `heads.decoder.*`, `heads.lateral.*`, `heads.refine.*`).

The metadata binds it to the SAM 2 checkpoint it was trained on: `backbone_arch` is
`sam2:<arch>` (as for the other SAM 2 plugins), `backbone_checkpoint` that file's
identity, and `config` the IpSamConfig that rebuilds the architecture (LoRA rank
included, which the tensors must agree with).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from engines.files.checkpoints import checkpoint_identity
from engines.files.plugin_index import plugin_beside
from engines.ip_sam.config import IpSamConfig
from engines.ip_sam.lora import lora_state
from engines.types import CheckpointError

ENGINE = "ip-sam"
LORA = "lora."
HEADS = "heads."


def backbone_arch(arch: str) -> str:
    return f"sam2:{arch}"


def train_hint(backbone: str | Path) -> str:
    return (f"train one on this SAM 2 checkpoint with `annotator train ip-sam --backbone "
            f"{backbone}` and pass it as the plugin")


def plugin_state(model) -> dict[str, torch.Tensor]:
    """What a plugin file holds for an (unmerged) IpSam."""
    if model.merged:
        raise ValueError("the LoRA of this IP-SAM is merged into the trunk: save the plugin "
                         "before merging")
    state = {LORA + k: v for k, v in lora_state(model.image_encoder.trunk).items()}
    state.update({HEADS + k: v for k, v in model.heads.state_dict().items()})
    return state


def save_ip_plugin(path: str | Path, model, *, sam2_path: str | Path, arch: str, **meta: Any) -> Path:
    """Write a trained IpSam's plugin, bound to the SAM 2 checkpoint it was trained on."""
    from engines.files.plugins import save_plugin
    return save_plugin(path, plugin_state(model), engine=ENGINE, backbone_arch=backbone_arch(arch),
                       backbone_checkpoint=checkpoint_identity(sam2_path),
                       config=model.cfg.to_dict(), **meta)


def plugin_config(record: Mapping[str, Any], path: str | Path) -> IpSamConfig:
    if not isinstance(record.get("config"), dict):
        raise CheckpointError(f"plugin {path} has no IP-SAM config record: it was not written by "
                              "save_ip_plugin")
    return IpSamConfig.from_dict(record["config"], source=f"plugin {path}")


def split_plugin_state(state: Mapping[str, torch.Tensor], path: str | Path
                       ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(LoRA factors, heads state), prefixes removed."""
    lora = {k[len(LORA):]: v for k, v in state.items() if k.startswith(LORA)}
    heads = {k[len(HEADS):]: v for k, v in state.items() if k.startswith(HEADS)}
    other = sorted(k for k in state if not k.startswith((LORA, HEADS)))
    if other:
        raise CheckpointError(f"plugin {path} holds {len(other)} tensors that are not IP-SAM's "
                              f"(e.g. {other[0]!r})")
    return lora, heads


def find_plugin(backbone: str | Path, directories: list[str | Path] | None = None) -> Path | None:
    """The newest ip-sam plugin trained on this very SAM 2 file (plugin_index.plugin_beside)."""
    return plugin_beside(backbone, ENGINE, directories)
