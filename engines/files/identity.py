"""Cheap content identity of (possibly GB-sized) checkpoint files, without torch: the
embedding cache, plugin metadata and the UI's model picker all key on it."""
from __future__ import annotations

import hashlib
from pathlib import Path


def checkpoint_identity(path: str | Path) -> str:
    """Cheap content identity of a (possibly GB-sized) file: size + head + tail hash."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.blake2b(str(size).encode(), digest_size=8)
    with path.open("rb") as f:
        digest.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), 2)
            digest.update(f.read(1 << 20))
    return digest.hexdigest()
