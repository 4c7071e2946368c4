"""How batch ranks talk: one process (`LocalComm`), or `torchrun` processes over
torch.distributed with the gloo backend (CPU; NCCL is not needed to send a few RLEs).

Only rank 0 opens the project; it plans, broadcasts the work list, and after each round
gathers every rank's proposals and writes them in one transaction per image. No two
processes ever write the project file.
"""
from __future__ import annotations

import os
from typing import Any

from annotator.core.automation.ranks import LocalComm


class TorchComm:
    """torch.distributed over gloo, set up from torchrun's environment."""

    def __init__(self) -> None:
        import torch.distributed as dist
        self._dist = dist
        self._owned = not dist.is_initialized()
        if self._owned:
            dist.init_process_group("gloo")
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def broadcast(self, obj: Any) -> Any:
        box = [obj if self.rank == 0 else None]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        out = [None] * self.world if self.rank == 0 else None
        self._dist.gather_object(obj, out, dst=0)
        return out or []

    def close(self) -> None:
        if self._owned and self._dist.is_initialized():
            self._dist.destroy_process_group()


def comm_from_env() -> LocalComm | TorchComm:
    """TorchComm under torchrun (WORLD_SIZE > 1), else LocalComm."""
    return TorchComm() if int(os.environ.get("WORLD_SIZE", "1")) > 1 else LocalComm()
