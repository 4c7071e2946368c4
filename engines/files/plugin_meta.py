"""A plugin file's metadata record, read without torch (the model picker in the UI,
which never imports torch, lists plugins with it). Weights: engines/files/plugins.py."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, fields
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
        cut = _truncation(path)
        if cut:
            raise CheckpointError(f"plugin {path} is truncated: {cut}; copy or train it again") from None
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


def _truncation(path: Path) -> str | None:
    """What is missing when a safetensors file was cut short (its own header says how
    long it is), or None when the bytes are not a cut safetensors file at all."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return None
        n = int.from_bytes(head, "little")
        if n > 100_000_000:          # not a header length: foreign bytes
            return None
        if 8 + n > size:
            return f"it has {size} bytes, its header alone needs {8 + n}"
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
    if not isinstance(header, dict):
        return None
    ends = [int(v["data_offsets"][1]) for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v]
    need = 8 + n + max(ends, default=0)
    return f"it has {size} of the {need} bytes its header describes" if need > size else None


def config_record(config: Any) -> dict[str, Any]:
    """A plugin's config dataclass as the JSON record its metadata stores (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}


def config_from_record(cls: type, record: Mapping[str, Any], source: str, what: str) -> Any:
    """`cls` (a config dataclass) rebuilt from `config_record`'s output; one
    CheckpointError naming `source` for unknown fields or values the class refuses."""
    unknown = sorted(set(record) - {f.name for f in fields(cls)})
    if unknown:
        raise CheckpointError(f"{source}: unknown {what} config field(s) {', '.join(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in record.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: invalid {what} config ({exc})") from None
