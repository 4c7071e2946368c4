"""Resolves the manifest's rows (engines/manifest.py) to the classes that build them.

A spec is the manifest row plus its factory, imported on first use: looking an engine up
never imports the others, and listing engines (`manifest.list_engines`) imports none.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from engines import manifest
from engines.manifest import TASKS, EngineInfo  # noqa: F401  (TASKS re-exported)
from engines.types import EngineError


@dataclass(frozen=True)
class EngineSpec:
    info: EngineInfo
    factory: Any           # a class with `from_checkpoint(path, *, arch, device, ...)`

    def __getattr__(self, name: str):    # name, tasks, plugin_hosts, ... of the row
        return getattr(self.info, name)


_SPECS: dict[str, EngineSpec] = {}


def get_spec(name: str) -> EngineSpec:
    info = manifest.get(name)
    if info is None:
        raise EngineError(f"unknown engine {name!r}; known: {', '.join(sorted(manifest.names()))}")
    if name not in _SPECS:
        _SPECS[name] = EngineSpec(info, getattr(importlib.import_module(info.module), info.factory))
    return _SPECS[name]


def all_specs() -> list[EngineSpec]:
    return [get_spec(name) for name in manifest.names()]
