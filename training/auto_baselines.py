"""The baselines `annotator eval` scores beside an "auto" engine, built from the manifest's
`eval_baselines` rows (engines.manifest) on one checkpoint.

The checkpoint's family (SAM or SAM 2.1) is read from the file (shapes only, as
engines.hosts does) and picks each baseline's counterpart on that family (sam2-amg on a
SAM 2 file, sam-amg on a SAM one). The promptable host (sam2) and the "segment
everything" engine on it (sam2-amg) share one model, so one embedding per image serves both.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from engines import manifest
from engines.files import describe_checkpoint, peek_state_dict
from engines.hosts import detect
from engines.registry import get_spec
from engines.types import CheckpointError


def checkpoint_family(path: str | Path) -> tuple[str, str | None]:
    """(family, arch) of a SAM / SAM 2.1 file: family names the engine that loads it, arch
    is None for a test-size SAM 2. CheckpointError names a missing or other file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"baseline checkpoint {path} does not exist")
    state = peek_state_dict(path, expected="SAM or SAM 2.1")
    found = detect.detect(state)
    if manifest.get(found.family) is None or found.family.startswith("hq-"):
        raise CheckpointError(f"baseline checkpoint {path} is not a SAM or SAM 2.1 checkpoint: "
                              f"it looks like {describe_checkpoint(state)}")
    return found.family, found.arch


def build_baselines(engine: str, checkpoint: str | Path, *, device=None,
                    image_size: int = 256) -> dict[str, tuple[Any, tuple[str, ...]]]:
    """{baseline name: (engine, protocols)} of `engine`'s eval baselines on `checkpoint`,
    in the manifest's order. `image_size`: the side a test-size SAM 2 is built at (the
    evaluated engine's input side); official files know theirs."""
    family, arch = checkpoint_family(checkpoint)
    try:
        rows = manifest.eval_baselines(engine, family)
    except ValueError as exc:
        raise CheckpointError(f"baseline checkpoint {checkpoint}: {exc}") from None
    host_factory = get_spec(family).factory
    kwargs: dict[str, Any] = {"arch": arch or "tiny", "device": device}
    if "image_size" in inspect.signature(host_factory.from_checkpoint).parameters:
        kwargs["image_size"] = image_size
    host = host_factory.from_checkpoint(checkpoint, **kwargs)
    out: dict[str, tuple[Any, tuple[str, ...]]] = {}
    for name, protocol in rows:
        if name not in out:
            # a host is itself; an engine that loads the host's checkpoints wraps it
            built = host if name == family else get_spec(name).factory(host)
            out[name] = (built, ())
        out[name] = (out[name][0], out[name][1] + (protocol,))
    return out
