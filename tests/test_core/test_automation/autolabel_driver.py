"""`python autolabel_driver.py PROJECT [SLEEP_S]`: a batch run with the tiny proposer, as
`annotator autolabel` runs it (one process, or each rank under torchrun). Prints one
line per stored image so a test can kill it mid-way."""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from annotator.core.automation.autolabel import AutolabelOptions, run_autolabel  # noqa: E402
from annotator.core.automation.distributed import comm_from_env  # noqa: E402
from annotator.core.store import Project  # noqa: E402
from autolabel_helpers import tiny_proposer  # noqa: E402


def main() -> int:
    torch.set_num_threads(1)        # the same numbers in every process and in the test
    path, sleep_s = Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    comm = comm_from_env()
    proposer = tiny_proposer()
    if sleep_s:
        slow, inner = proposer.propose, sleep_s

        def propose(p, cancel=None):
            time.sleep(inner)
            return slow(p, cancel=cancel)
        proposer.propose = propose
    project = Project.open(path) if comm.rank == 0 else None
    try:
        summary = run_autolabel(project, proposer, AutolabelOptions(), comm=comm,
                                progress=lambda info: print(f"stored {info.file_name}",
                                                            flush=True))
    finally:
        if project is not None:
            project.close()
        comm.close()
    if comm.rank == 0:
        print("summary", summary.done, sum(summary.added.values()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
