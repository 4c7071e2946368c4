"""What the model picker shows and does, without Qt or torch: the catalogue with each
entry's state in a models folder, and a download into that folder.

The router takes, per engine, the first installed catalogue entry (they run small to
large; an engine with several frozen files of its own takes one of each arch);
`model_statuses` marks that one as in use, so the picker says which file an engine will
load after a restart.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from engines import manifest
from engines.files import (CatalogueError, ModelEntry, Progress, is_installed,
                                     load_catalogue, model_path, models_dir)
from engines.files import DownloadError, download

__all__ = ["CatalogueError", "DownloadError", "ModelEntry", "ModelStatus", "download_model",
           "load_catalogue", "model_statuses", "models_dir", "partial_path"]


@dataclass(frozen=True)
class ModelStatus:
    entry: ModelEntry
    path: Path               # where the file is, or will be once downloaded
    installed: bool          # present and of the catalogued size (no hashing: cheap)
    in_use: bool             # the router's pick for this engine: first installed in order
    partial_bytes: int       # bytes of a resumable `.part` an interrupted download left


def partial_path(path: Path) -> Path:
    """The file a download writes before verifying (engines.files.downloader's naming)."""
    return path.with_name(path.name + ".part")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def model_statuses(directory: str | Path | None = None,
                   entries: Iterable[ModelEntry] | None = None) -> list[ModelStatus]:
    """Every catalogue entry (the shipped catalogue unless `entries`) with its state in
    the models folder `directory` (None: $ANNOTATOR_MODELS_DIR or the user data dir)."""
    entries = list(load_catalogue() if entries is None else entries)
    folder = models_dir(directory)
    engines_in_use: set = set()
    rows = []
    for entry in entries:
        path = model_path(entry, folder)
        installed = is_installed(entry, folder)
        # an engine that loads several files of its own (pmg-sam) uses one of each arch
        info = manifest.get(entry.engine)
        role = (entry.engine, entry.arch) if info is not None and info.backbone_files else entry.engine
        in_use = installed and role not in engines_in_use
        if in_use:
            engines_in_use.add(role)
        rows.append(ModelStatus(entry, path, installed, in_use,
                                0 if installed else _size(partial_path(path))))
    return rows


def download_model(entry: ModelEntry, directory: str | Path | None = None, *,
                   progress: Progress | None = None, **options) -> Path:
    """Download `entry` into the models folder (resuming a `.part`), verify it and return
    its path. DownloadError names the file and the problem; exceptions raised by
    `progress` propagate and leave the `.part` for a later resume (that is how a caller
    cancels). `options` go to engines.files.downloader.download (timeout, chunk_size ...)."""
    return download(entry, model_path(entry, models_dir(directory)), progress=progress,
                    **options)
