"""SAM-MI's plugin file (engines/files/plugins.py: safetensors + metadata): the trained
heads (`heads.*`: guidance upsamplers, CAT-Seg aggregator, TSPP, DMI) and, when stage 2
fine-tuned CLIP's attention subset, those CLIP tensors (`clip.*`, overriding the file's).

The metadata binds it to the CLIP checkpoint it was trained on (`backbone_arch`
`clip:<arch>`, `backbone_checkpoint` that file's identity), carries the SamMiConfig
(`config`) and the class vocabulary it was trained on (`classes_seen`); it still takes any
typed name at inference. SAM is frozen and only proposes masks, so the SAM host is
recorded (`sam_host`) but not enforced.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from engines.files.checkpoints import checkpoint_identity
from engines.files.plugin_meta import read_plugin_metadata
from engines.sam_mi.config import SamMiConfig
from engines.types import CheckpointError

ENGINE = "sam-mi"
HEADS, CLIP = "heads.", "clip."


def clip_arch(name: str) -> str:
    return f"clip:{name}"


def save_sam_mi_plugin(path: str | Path, model, *, clip_path: str | Path, clip_name: str,
                       classes_seen: list[str], clip_state: dict[str, torch.Tensor] | None = None,
                       **meta: Any) -> Path:
    from engines.files.plugins import save_plugin
    state = {HEADS + k: v for k, v in model.heads.state_dict().items()}
    state.update({CLIP + k: v for k, v in (clip_state or {}).items()})
    return save_plugin(path, state, engine=ENGINE, backbone_arch=clip_arch(clip_name),
                       backbone_checkpoint=checkpoint_identity(clip_path), config=model.cfg.to_dict(),
                       classes_seen=list(classes_seen), **meta)


def read_sam_mi_plugin(plugin: str | Path, clip_path: str | Path, clip_name: str
                       ) -> tuple[SamMiConfig, dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """(config, heads state, CLIP overrides, metadata), each wrong file one CheckpointError."""
    record = read_plugin_metadata(plugin)
    if record.get("engine") != ENGINE:
        raise CheckpointError(f"plugin {plugin} is a {record.get('engine')!r} plugin, not {ENGINE!r}")
    if not isinstance(record.get("config"), dict):
        raise CheckpointError(f"plugin {plugin} has no SAM-MI config record")
    cfg = SamMiConfig.from_dict(record["config"], source=f"plugin {plugin}")
    if record.get("backbone_arch") != clip_arch(clip_name):
        raise CheckpointError(f"plugin {plugin} was trained on CLIP {record.get('backbone_arch')!r}, "
                              f"but {clip_path} is {clip_arch(clip_name)!r}")
    identity = checkpoint_identity(clip_path)
    if record.get("backbone_checkpoint") != identity:
        raise CheckpointError(f"plugin {plugin} was trained on another CLIP file (identity "
                              f"{record.get('backbone_checkpoint')}, {Path(clip_path).name} has {identity})")
    from safetensors.torch import load_file
    try:
        state = load_file(str(plugin))
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"plugin {plugin} is truncated or damaged ({str(exc)[:120]})") from None
    heads = {k[len(HEADS):]: v for k, v in state.items() if k.startswith(HEADS)}
    clip = {k[len(CLIP):]: v for k, v in state.items() if k.startswith(CLIP)}
    other = sorted(k for k in state if not k.startswith((HEADS, CLIP)))
    if other:
        raise CheckpointError(f"plugin {plugin} holds {len(other)} tensors that are not SAM-MI's "
                              f"(e.g. {other[0]!r})")
    return cfg, heads, clip, record
