"""One idiom for replacing a method on one module instance: `patch(module, attr,
replacement, tag)` / `unpatch(module, tag)` / `is_patched(module, tag)`.

The fast paths, the exact path's memoisation and plugins' layer hooks all change a
module by setting an instance attribute (its class, parameters, state dict and module
tree stay untouched, so a model can be shared and a patch undone). Each patch is kept
under its tag in one registry on the instance, with the attribute as it was, so the
replacement can call the reference (`reference(module, tag)`) and `unpatch` restores it.
"""
from __future__ import annotations

import types
from dataclasses import dataclass
from typing import Any, Callable

_REGISTRY = "_annotator_patches"    # {tag: _Patch}, in the instance's __dict__


@dataclass
class _Patch:
    attr: str
    had_own: bool          # the instance had its own attribute before (else: the class's)
    previous: Any          # that instance attribute, if it had one
    original: Any          # what `module.<attr>` was (bound): the reference to call
    installed: Any         # what the patch set


def patch(module: Any, attr: str, replacement: Callable, tag: str, *, bind: bool = True) -> bool:
    """Set `module.<attr>` to `replacement` (a function taking the module first, bound to
    it; with bind=False, a callable set as it is) until `unpatch(module, tag)`.
    Idempotent: False, and nothing changes, when `tag` is already installed."""
    patches = vars(module).setdefault(_REGISTRY, {})
    if tag in patches:
        return False
    installed = types.MethodType(replacement, module) if bind else replacement
    own = vars(module)
    patches[tag] = _Patch(attr, attr in own, own.get(attr), getattr(module, attr), installed)
    object.__setattr__(module, attr, installed)
    return True


def unpatch(module: Any, tag: str) -> bool:
    """Undo `patch(..., tag)`; False when it is not installed. Patches stacked on one
    attribute come off in reverse order (anything else would drop the later one)."""
    patches = vars(module).get(_REGISTRY, {})
    entry = patches.get(tag)
    if entry is None:
        return False
    if vars(module).get(entry.attr) is not entry.installed:
        raise RuntimeError(f"cannot unpatch {tag!r} of {type(module).__name__}.{entry.attr}: "
                           "another patch was set on top of it; unpatch that one first")
    del patches[tag]
    if entry.had_own:
        object.__setattr__(module, entry.attr, entry.previous)
    else:
        del vars(module)[entry.attr]
    if not patches:
        del vars(module)[_REGISTRY]
    return True


def is_patched(module: Any, tag: str) -> bool:
    return tag in vars(module).get(_REGISTRY, {})


def installed(module: Any, tag: str) -> Any | None:
    """What `patch(..., tag)` set on this module, or None."""
    entry = vars(module).get(_REGISTRY, {}).get(tag)
    return None if entry is None else entry.installed


def reference(module: Any, tag: str) -> Callable:
    """The attribute as it was before `patch(..., tag)`: what a replacement falls back to."""
    return vars(module)[_REGISTRY][tag].original
