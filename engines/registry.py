"""Engine registry: engines register themselves by name with a decorator.

An entry says what prompts the engine answers and how to build it; the router reads the
registry, never an if/elif chain. Fallback order lives in engines/router.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .types import Engine, EngineError

# What a prompt asks for; engines declare which of these they answer.
TASKS = ("points", "box", "text", "auto")


@dataclass(frozen=True)
class EngineSpec:
    name: str
    factory: Callable[..., Engine]
    tasks: frozenset[str]
    description: str = ""
    needs_checkpoint: bool = True
    # engines that can run a trained plugin on a checkpoint of these host engines
    plugin_hosts: tuple[str, ...] = ()
    plugin_required: bool = False   # True: no plugin, no engine (its own weights do not exist)


_REGISTRY: dict[str, EngineSpec] = {}


def register_engine(name: str, *, tasks: tuple[str, ...], description: str = "",
                    needs_checkpoint: bool = True, plugin_hosts: tuple[str, ...] = (),
                    plugin_required: bool = False):
    """Class or factory decorator: `@register_engine("sam", tasks=("points", "box"))`."""
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"engine {name!r}: unknown tasks {sorted(unknown)}")

    def deco(factory):
        if name in _REGISTRY and _REGISTRY[name].factory is not factory:
            raise ValueError(f"engine {name!r} is registered twice")
        _REGISTRY[name] = EngineSpec(name, factory, frozenset(tasks), description,
                                     needs_checkpoint, tuple(plugin_hosts), plugin_required)
        return factory
    return deco


def get_spec(name: str) -> EngineSpec:
    _load_builtin_engines()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise EngineError(f"unknown engine {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def all_specs() -> list[EngineSpec]:
    _load_builtin_engines()
    return list(_REGISTRY.values())


_BUILTIN_MODULES = ("engines.classic", "engines.sam_engine", "engines.sam2_engine",
                    "engines.hq_sam_engine", "engines.stable_sam_engine")


def _load_builtin_engines() -> None:
    """Import the engine modules so their decorators run (cheap after the first call)."""
    import importlib
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
