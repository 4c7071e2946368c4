"""Ranks of a batch run without torch: one process (`LocalComm`, what the window and a
plain `annotator autolabel` use), and `agree`, shared with the torch.distributed
`TorchComm` (distributed.py), which only the command line imports."""
from __future__ import annotations

from typing import Any


class LocalComm:
    rank, world = 0, 1

    def broadcast(self, obj: Any) -> Any:
        return obj

    def gather(self, obj: Any) -> list[Any]:
        return [obj]

    def close(self) -> None:
        pass


def agree(comm: Any, problem: str | None) -> str | None:
    """The first rank's problem (or None), known to every rank, so all stop together
    instead of leaving the others waiting."""
    problems = comm.gather(problem)
    first = next((p for p in problems if p), None) if comm.rank == 0 else None
    return comm.broadcast(first)
