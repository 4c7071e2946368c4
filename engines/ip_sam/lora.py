"""LoRA on SAM 2's Hiera trunk (spec §2.1): `W x + b + s · B (A x)` on `attn.qkv` and
`attn.proj` of every `MultiScaleBlock` (the block-level shortcut `proj` is left alone).
A is Kaiming-uniform (loralib's init), B is zero, so a fresh LoRA changes nothing; the
base weights stay frozen. `merge_lora` folds `s · B A` into the base weights and puts
plain `nn.Linear`s back, so a merged encoder costs exactly what SAM 2's does.

Plugin keys are the wrapped layer's path in the trunk plus `.lora_A` / `.lora_B`
(`blocks.7.attn.qkv.lora_A`: (r, in), `...lora_B`: (out, r)).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from engines.types import CheckpointError


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus a trainable rank-r update."""

    def __init__(self, base: nn.Linear, rank: int, scale: float = 1.0):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        self.base = base.requires_grad_(False)
        self.scale = scale
        kw = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **kw))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **kw))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    @property
    def rank(self) -> int:
        return self.lora_A.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scale

    def merged(self) -> nn.Linear:
        """The plain Linear with `W + s · B A` (a new module; this one is untouched)."""
        base = self.base
        out = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                        device=base.weight.device, dtype=base.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(base.weight + (self.lora_B @ self.lora_A) * self.scale)
            if base.bias is not None:
                out.bias.copy_(base.bias)
        return out.requires_grad_(False)


def lora_targets(trunk: nn.Module, targets: tuple[str, ...] = ("qkv", "proj")
                 ) -> Iterator[tuple[str, nn.Module, str]]:
    """(path, attention module, attribute) of every layer LoRA goes on, in block order."""
    for i, block in enumerate(trunk.blocks):
        for name in targets:
            yield f"blocks.{i}.attn.{name}", block.attn, name


def add_lora(trunk: nn.Module, rank: int, scale: float = 1.0,
             targets: tuple[str, ...] = ("qkv", "proj")) -> list[LoRALinear]:
    """Freeze the whole trunk and wrap its attention layers in place; returns the wrappers."""
    trunk.requires_grad_(False)
    wrapped = []
    for _, attn, name in lora_targets(trunk, targets):
        layer = getattr(attn, name)
        if isinstance(layer, LoRALinear):
            raise RuntimeError("the trunk already has LoRA layers")  # noqa: TRY004
        lora = LoRALinear(layer, rank, scale)
        setattr(attn, name, lora)
        wrapped.append(lora)
    return wrapped


def merge_lora(trunk: nn.Module) -> int:
    """Fold every LoRA update into its base Linear, in place; returns how many were merged."""
    n = 0
    for _, attn, name in lora_targets(trunk):
        layer = getattr(attn, name)
        if isinstance(layer, LoRALinear):
            setattr(attn, name, layer.merged())
            n += 1
    return n


def lora_layers(trunk: nn.Module) -> dict[str, LoRALinear]:
    return {path: getattr(attn, name) for path, attn, name in lora_targets(trunk)
            if isinstance(getattr(attn, name), LoRALinear)}


def lora_state(trunk: nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA factors only: `{path}.lora_A`, `{path}.lora_B`."""
    state = {}
    for path, layer in lora_layers(trunk).items():
        state[f"{path}.lora_A"] = layer.lora_A.detach()
        state[f"{path}.lora_B"] = layer.lora_B.detach()
    return state


def lora_parameter_count(trunk: nn.Module, rank: int, targets: tuple[str, ...] = ("qkv", "proj")) -> int:
    """r · (in + out) summed over the target layers, read from shapes only (works on a
    meta-device trunk, wrapped or not)."""
    total = 0
    for _, attn, name in lora_targets(trunk, targets):
        layer = getattr(attn, name)
        layer = layer.base if isinstance(layer, LoRALinear) else layer
        total += rank * (layer.in_features + layer.out_features)
    return total


def load_lora(trunk: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy LoRA factors into the wrapped trunk; every shape is checked first (the rank
    recorded for the plugin must be the rank of its tensors), each failure one
    CheckpointError naming the file."""
    layers = lora_layers(trunk)
    expected = {f"{p}.lora_{ab}" for p in layers for ab in "AB"}
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        detail = [f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []
        detail += [f"{len(unexpected)} unexpected (e.g. {unexpected[0]})"] if unexpected else []
        raise CheckpointError(f"plugin {source}: its LoRA tensors do not fit this trunk's "
                              f"{len(layers)} LoRA layers: " + "; ".join(detail))
    for path, layer in layers.items():
        a, b = state[f"{path}.lora_A"], state[f"{path}.lora_B"]
        want_a, want_b = tuple(layer.lora_A.shape), tuple(layer.lora_B.shape)
        if tuple(a.shape) != want_a or tuple(b.shape) != want_b:
            raise CheckpointError(
                f"plugin {source}: its metadata says LoRA rank {layer.rank}, but its tensors "
                f"for {path} are lora_A {tuple(a.shape)} / lora_B {tuple(b.shape)} (rank "
                f"{layer.rank} needs {want_a} / {want_b}); the file is inconsistent")
    with torch.no_grad():
        for path, layer in layers.items():
            layer.lora_A.copy_(state[f"{path}.lora_A"])
            layer.lora_B.copy_(state[f"{path}.lora_B"])
