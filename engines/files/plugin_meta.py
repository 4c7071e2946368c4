"""A plugin file's metadata record, read without torch (the model picker in the UI,
which never imports torch, lists plugins with it). Weights: engines/files/plugins.py."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engines.types import CheckpointError

FORMAT = 1
HEADER_KEY = "annotator_plugin"


def read_plugin_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata record of a plugin file, or a CheckpointError naming what is wrong."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"plugin {path} does not exist")
    try:
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
    except Exception as exc:   # safetensors raises several types on foreign bytes
        raise CheckpointError(f"plugin {path} is not a safetensors file ({str(exc)[:160]})") from None
    if HEADER_KEY not in header:
        raise CheckpointError(f"plugin {path} has no {HEADER_KEY!r} metadata: it was not "
                              "written by `annotator train`")
    try:
        record = json.loads(header[HEADER_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"plugin {path}: its metadata is not valid JSON ({exc})") from None
    if record.get("format") != FORMAT:
        raise CheckpointError(f"plugin {path} has format {record.get('format')!r}; this version "
                              f"reads format {FORMAT}")
    return record
