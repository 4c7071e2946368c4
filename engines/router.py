"""Picks the engine that answers a prompt, falling back along a documented chain.

The chains (first installed engine wins; the last step needs no model at all):

| request                     | chain                                            |
|-----------------------------|--------------------------------------------------|
| points or box               | stable-sam -> sam2 -> sam -> classic             |
| points or box, fine edges   | hq-sam -> stable-sam -> sam2 -> sam -> classic   |
| typed class name ("text")   | sam-mi (no fallback: nothing else reads text)    |
| no prompt ("auto")          | pmg-sam -> ip-sam (no fallback)                  |

SAM 2 comes before SAM because Hiera-T encodes an image several times faster than ViT-B
on a CPU. An engine is "installed" when it is registered and, if it needs a checkpoint,
one is in the models folder (or was given explicitly). Engines are built once and kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import catalogue
from .registry import get_spec
from .types import Engine, EngineError

POINT_CHAIN = ("stable-sam", "sam2", "sam", "classic")
ROUTES: dict[tuple[str, bool], tuple[str, ...]] = {
    ("points", False): POINT_CHAIN,
    ("box", False): POINT_CHAIN,
    ("points", True): ("hq-sam",) + POINT_CHAIN,
    ("box", True): ("hq-sam",) + POINT_CHAIN,
    ("text", False): ("sam-mi",),
    ("text", True): ("sam-mi",),
    ("auto", False): ("pmg-sam", "ip-sam"),
    ("auto", True): ("pmg-sam", "ip-sam"),
}
NOT_INSTALLED_HINT = {
    "text": "no text engine installed: typed class names need the sam-mi engine",
    "auto": "no proposal engine installed: Auto needs the pmg-sam or ip-sam engine",
}


@dataclass
class Routed:
    engine: Engine
    name: str
    checkpoint: Path | None
    skipped: list[str] = field(default_factory=list)   # "name: why it was not used"

    def explain(self) -> str:
        ckpt = f" ({self.checkpoint.name})" if self.checkpoint else ""
        why = f"; skipped {'; '.join(self.skipped)}" if self.skipped else ""
        return f"{self.name}{ckpt}{why}"


class Router:
    def __init__(self, *, models_dir: str | Path | None = None, device: str | None = None,
                 checkpoints: dict[str, str | Path] | None = None):
        self.models_dir = catalogue.models_dir(models_dir)
        self.device = device
        self.checkpoints = {k: Path(v) for k, v in (checkpoints or {}).items()}
        self._built: dict[tuple[str, Path | None], Engine] = {}

    def chain(self, task: str, fine_edges: bool = False) -> tuple[str, ...]:
        try:
            return ROUTES[(task, fine_edges)]
        except KeyError:
            raise EngineError(f"unknown task {task!r}; tasks: points, box, text, auto") from None

    def route(self, task: str, *, fine_edges: bool = False, engine: str | None = None) -> Routed:
        """The engine for `task`; `engine` forces one (no fallback: the user chose it)."""
        names = (engine,) if engine else self.chain(task, fine_edges)
        skipped: list[str] = []
        for name in names:
            why = self._unavailable_reason(name, task)
            if why:
                skipped.append(f"{name}: {why}")
                continue
            checkpoint, arch = self._locate(name)
            return Routed(self._build(name, checkpoint, arch), name, checkpoint, skipped)
        head = NOT_INSTALLED_HINT.get(task, f"no engine can answer a {task} prompt")
        raise EngineError(f"{head} ({'; '.join(skipped)})")

    def _unavailable_reason(self, name: str, task: str) -> str | None:
        try:
            spec = get_spec(name)
        except EngineError:
            return "not part of this build"
        if task not in spec.tasks:
            return f"does not answer {task} prompts"
        if spec.needs_checkpoint and self._locate(name)[0] is None:
            return f"no checkpoint in {self.models_dir} (see `annotator models list`)"
        return None

    def _locate(self, name: str) -> tuple[Path | None, str | None]:
        """(checkpoint, arch) for an engine: an explicit file (arch read from its keys)
        or the first catalogued one installed in the models folder."""
        if name in self.checkpoints:
            return self.checkpoints[name], None
        if not get_spec(name).needs_checkpoint:
            return None, None
        try:
            found = catalogue.find_checkpoint(name, directory=self.models_dir)
        except EngineError:       # no catalogued checkpoints for this engine
            return None, None
        return (found[1], found[0].arch) if found else (None, None)

    def _build(self, name: str, checkpoint: Path | None, arch: str | None) -> Engine:
        key = (name, checkpoint)
        if key not in self._built:
            factory = get_spec(name).factory
            if checkpoint is None:
                self._built[key] = factory(device=self.device)
            else:
                self._built[key] = factory.from_checkpoint(checkpoint, arch=arch, device=self.device)
        return self._built[key]
