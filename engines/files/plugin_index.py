"""Trained plugins installed in the models folder, and which backbone each one needs.

`annotator train ENGINE` writes its plugin to `<models folder>/plugins/ENGINE/` by
default; the router and the model picker find them here. A plugin is usable only on
the exact backbone checkpoint it was trained on (engines/files/plugins.py checks it again on
load), so `usable_plugin` pairs a plugin with an installed checkpoint of the same
identity.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from engines.files.plugin_meta import read_plugin_metadata
from engines.types import CheckpointError

log = logging.getLogger(__name__)
PLUGINS_SUBDIR = "plugins"


@dataclass(frozen=True)
class InstalledPlugin:
    path: Path
    engine: str
    backbone_arch: str            # e.g. "sam:vit_b", "sam2:hiera_t"
    backbone_checkpoint: str      # engines.files.checkpoints.checkpoint_identity of the backbone file
    created: str = ""
    metrics: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def label(self) -> str:
        """One line for people: "stable-sam on sam2:hiera_t (2026-11-22, plugin.safetensors)"."""
        return f"{self.engine} on {self.backbone_arch} ({self.created[:10]}, {self.path.name})"


@lru_cache(maxsize=256)
def _identity(path: str, size: int, mtime_ns: int) -> str:
    """checkpoint_identity, remembered per file version (the router asks on every route)."""
    from engines.files.identity import checkpoint_identity
    return checkpoint_identity(path)


def plugins_dir(models_dir: Path) -> Path:
    return Path(models_dir) / PLUGINS_SUBDIR


def read_installed(path: Path) -> InstalledPlugin:
    """One plugin file's record (CheckpointError if it is not a plugin)."""
    meta = read_plugin_metadata(path)
    return InstalledPlugin(Path(path), str(meta.get("engine")), str(meta.get("backbone_arch")),
                           str(meta.get("backbone_checkpoint")), str(meta.get("created", "")),
                           dict(meta.get("metrics") or {}))


def scan_plugins(folder: Path, engine: str | None = None, *, recursive: bool = True
                 ) -> list[InstalledPlugin]:
    """Every readable plugin in `folder` (newest first); unreadable files are logged and
    skipped, never raised: one bad file must not hide the others. A training run's
    feature cache (a `features/` folder of safetensors) is not looked into."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.rglob("*.safetensors") if recursive else folder.glob("*.safetensors")):
        if "features" in path.relative_to(folder).parts:
            continue
        try:
            plugin = read_installed(path)
        except CheckpointError as exc:
            log.warning("skipping plugin: %s", exc)
            continue
        if engine is None or plugin.engine == engine:
            found.append(plugin)
    return sorted(found, key=lambda p: p.created, reverse=True)


def find_plugins(models_dir: Path, engine: str | None = None) -> list[InstalledPlugin]:
    """Every readable plugin under the models folder's plugins/ (newest first)."""
    return scan_plugins(plugins_dir(models_dir), engine)


def usable_plugin(plugins: Iterable[InstalledPlugin], checkpoints: Iterable[Path]
                  ) -> tuple[InstalledPlugin, Path] | None:
    """The newest plugin whose backbone is one of `checkpoints` (matched by identity)."""
    by_identity = {}
    for path in checkpoints:
        try:
            st = Path(path).stat()
        except OSError:
            continue
        by_identity.setdefault(_identity(str(path), st.st_size, st.st_mtime_ns), Path(path))
    for plugin in plugins:
        if plugin.backbone_checkpoint in by_identity:
            return plugin, by_identity[plugin.backbone_checkpoint]
    return None


def plugin_beside(backbone: str | Path, engine: str,
                  directories: Iterable[str | Path] | None = None) -> Path | None:
    """The newest `engine` plugin trained on this very backbone file, looked for in
    `directories` (default: the file's folder, its `plugins/` and `plugins/ENGINE/`)."""
    backbone = Path(backbone)
    folders = list(directories) if directories is not None else [
        backbone.parent, backbone.parent / "plugins", backbone.parent / "plugins" / engine]
    plugins = [p for folder in folders for p in scan_plugins(Path(folder), engine, recursive=False)]
    pair = usable_plugin(sorted(plugins, key=lambda p: p.created, reverse=True), [backbone])
    return pair[0].path if pair else None


def unreadable_plugins(models_dir: Path, engine: str) -> list[str]:
    """Why each file under plugins/ENGINE/ that scan_plugins skipped cannot be read (a
    truncated copy, foreign bytes): the router names them when no plugin is usable."""
    folder = plugins_dir(models_dir) / engine
    problems = []
    for path in sorted(folder.rglob("*.safetensors")) if folder.is_dir() else ():
        if "features" in path.relative_to(folder).parts:
            continue
        try:
            read_installed(path)
        except CheckpointError as exc:
            problems.append(str(exc))
    return problems
