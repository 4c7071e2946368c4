"""Trained plugin files: safetensors weights plus a JSON metadata record.

A plugin is only meaningful on the frozen weights it was trained on, so the metadata
names the engine, the backbone architecture and the backbone checkpoint's identity, and
`load_plugin` refuses a file made for anything else with one clear message. The JSON
sits in the safetensors header (one file to copy around) and, for people, beside it as
`<name>.json`.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from engines.types import CheckpointError

from engines.files.plugin_meta import FORMAT, HEADER_KEY, read_plugin_metadata

__all__ = ["FORMAT", "HEADER_KEY", "load_plugin", "read_plugin_metadata", "save_plugin"]


def save_plugin(path: str | Path, state: dict[str, torch.Tensor], *, engine: str,
                backbone_arch: str, backbone_checkpoint: str, **meta: Any) -> Path:
    """Write `state` and its metadata atomically; returns the path written."""
    from safetensors.torch import save_file
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"format": FORMAT, "engine": engine, "backbone_arch": backbone_arch,
              "backbone_checkpoint": backbone_checkpoint,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **meta}
    text = json.dumps(record, sort_keys=True, default=str)
    tmp = path.with_name(path.name + ".part")
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp),
              metadata={HEADER_KEY: text})
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return path


def load_plugin(path: str | Path, *, engine: str, backbone_arch: str,
                backbone_checkpoint: str | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and metadata of a plugin for `engine` on the given backbone.

    `backbone_checkpoint=None` skips the checkpoint-identity check (tests, or a caller
    that verified it another way); the architecture is always checked."""
    from safetensors.torch import load_file
    record = read_plugin_metadata(path)
    if record.get("engine") != engine:
        raise CheckpointError(f"plugin {path} is a {record.get('engine')!r} plugin, not {engine!r}")
    if record.get("backbone_arch") != backbone_arch:
        raise CheckpointError(
            f"plugin {path} was trained for backbone {record.get('backbone_arch')!r}, but the "
            f"loaded backbone is {backbone_arch!r}; train one for this backbone with "
            f"`annotator train {engine} --backbone ...`")
    if backbone_checkpoint is not None and record.get("backbone_checkpoint") != backbone_checkpoint:
        raise CheckpointError(
            f"plugin {path} was trained on another {backbone_arch} checkpoint (identity "
            f"{record.get('backbone_checkpoint')}, loaded {backbone_checkpoint}); its "
            "weights only make sense on the frozen weights it was trained with")
    return load_file(str(path)), record
