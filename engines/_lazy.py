"""Lazy public surfaces: a package names what it exports and imports a submodule only
when one of its names is first used, so a torch-free name (the catalogue, the manifest)
never pulls in torch through its package's `__init__`."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, table: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`table` maps an exported name to the submodule (relative to `package`) that
    defines it; a name mapped to "" is that submodule itself. Returns the package's
    `__getattr__` and `__dir__`."""
    def __getattr__(name: str) -> Any:
        try:
            where = table[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        if where == "":
            return importlib.import_module(f"{package}.{name}")
        return getattr(importlib.import_module(f"{package}.{where}"), name)

    def __dir__() -> list[str]:
        return sorted(table)

    return __getattr__, __dir__
