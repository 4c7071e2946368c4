"""Running the same training command under `torchrun --nproc_per_node N`.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; we start a
process group from them (gloo on CPU, NCCL on CUDA), wrap the adapter in
DistributedDataParallel, and shard every global batch by rank. Without those variables
everything runs in one process and these helpers are no-ops.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def from_env() -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


@contextmanager
def process_group(info: DistInfo, device: torch.device):
    """Initialise (and always tear down) the process group when running distributed."""
    if not info.enabled or dist.is_initialized():
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world)
    try:
        yield
    finally:
        dist.destroy_process_group()


class _TupleOutput(torch.nn.Module):
    """DDP finds the output tensors it must watch in tuples and dicts, not dataclasses."""

    def __init__(self, adapter: torch.nn.Module):
        super().__init__()
        self.adapter = adapter

    def forward(self, features, prompts):
        out = self.adapter(features, prompts)
        return out.logits, out.iou_pred, out.extras


def wrap(adapter: torch.nn.Module, info: DistInfo, device: torch.device):
    """A callable (features, prompts) -> AdapterOutput: the adapter itself, or under
    torchrun the adapter in DDP over its trainable parameters (frozen ones have
    requires_grad=False and are ignored). DDP broadcasts rank 0's initial weights, so
    every rank starts equal."""
    if not info.enabled:
        return adapter
    from torch.nn.parallel import DistributedDataParallel

    from .api import AdapterOutput
    ids = [info.local_rank] if device.type == "cuda" else None
    # find_unused_parameters: a plugin may have parts a batch does not use (e.g. the
    # multimask heads when no prompt is a single click)
    ddp = DistributedDataParallel(_TupleOutput(adapter), device_ids=ids, find_unused_parameters=True)

    def forward(features, prompts):
        ddp.train()
        return AdapterOutput(*ddp(features, prompts))
    return forward


def shard(items: list, info: DistInfo) -> list:
    """This rank's share of a global batch (the global batch must divide evenly so every
    rank's gradient has the same weight in DDP's average)."""
    if len(items) % info.world:
        raise ValueError(f"global batch of {len(items)} does not split evenly over {info.world} processes")
    return items[info.rank::info.world]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
