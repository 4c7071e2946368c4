"""Batch auto-labelling throughput: `sam2-amg` on a full-size SAM 2.1 Hiera-T with RANDOM
weights (no weights can be downloaded here) over the photos in ../shared/data/photos/,
one process against `torchrun --nproc_per_node 2`, each writing candidates into its own
fresh project exactly as `annotator autolabel` does (rank 0 the only writer). Also the
window's review speed (bench/review_speed.py) when that module is present.

With random weights almost nothing passes the default filters, so the proposer runs with
its filters off (IoU 0, stability 0, NMS 1.0): every click's mask is kept, upsampled,
encoded and checked against the others, the work real weights would give it.

    python bench/autolabel.py [--images 6] [--side 16] [--no-review] [--no-write]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _docs import write_section  # noqa: E402
from _proc import cpu_header  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PHOTOS = ROOT.parent / "shared" / "data" / "photos"
FILTERS_OFF = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}


def worker(project: str, side: int) -> None:
    """One rank of a batch run (or the only one): prints a JSON line on rank 0."""
    import torch
    sys.path.insert(0, str(ROOT))
    from annotator.core.automation.autolabel import AutolabelOptions, run_autolabel
    from annotator.core.automation.distributed import comm_from_env
    from annotator.core.automation.proposer import ImageProposer
    from annotator.core.store import Project
    from engines.files import EmbeddingCache
    from engines.hosts import Sam2Engine, build_sam2_architecture
    from engines.router import Routed
    from engines.sam_amg import AmgOptions, Sam2AmgEngine
    torch.manual_seed(0)
    host = Sam2Engine(build_sam2_architecture("hiera_t"), backbone_key="sam2:hiera_t:random",
                      device="cpu")
    engine = Sam2AmgEngine(host, defaults=AmgOptions.for_host("sam2").updated(
        {"points_per_side": side, **FILTERS_OFF}))
    proposer = ImageProposer(lambda task, name: Routed(engine, engine.name, None),
                             EmbeddingCache(disk=False))
    comm = comm_from_env()
    p = Project.open(project) if comm.rank == 0 else None
    t0 = time.perf_counter()
    try:
        summary = run_autolabel(p, proposer, AutolabelOptions(), comm=comm)
    finally:
        if p is not None:
            p.close()
        comm.close()
    if comm.rank == 0:
        print(json.dumps({"seconds": time.perf_counter() - t0, "images": summary.done,
                          "candidates": sum(summary.added.values()),
                          "threads": torch.get_num_threads(), "world": comm.world}), flush=True)


def make_project(folder: Path, photos: list[Path]) -> Path:
    sys.path.insert(0, str(ROOT))
    from annotator.core.store import Project
    path = folder / "bench.annot"
    with Project.create(path, PHOTOS) as p:
        p.add_images(photos)
    return path


def run_case(command: list[str]) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=6, help="photos to label (default 6)")
    ap.add_argument("--side", type=int, default=16, help="points per side (default 16)")
    ap.add_argument("--no-review", action="store_true", help="skip the window's review speed")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.side)
        return
    photos = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    photos = photos[:args.images]
    me = [sys.executable, str(Path(__file__).resolve())]
    rows = []
    for label, prefix in (("1 process (2 threads)", []),
                          ("torchrun --nproc_per_node 2 (1 thread each)",
                           [sys.executable, "-m", "torch.distributed.run", "--standalone",
                            "--nproc_per_node", "2"])):
        with tempfile.TemporaryDirectory() as tmp:
            project = make_project(Path(tmp), photos)
            command = (prefix + [str(Path(__file__).resolve())]) if prefix else me
            result = run_case(command + ["--worker", str(project), "--side", str(args.side)])
        rows.append((label, result))
        print(label, result, flush=True)
    lines = [f"CPU: {cpu_header()}. SAM 2.1 Hiera-T, full size, random weights; "
             f"{len(photos)} photos from ../shared/data/photos/, {args.side}x{args.side} "
             "clicks per image, filters off; each run labels a fresh project (embedding "
             "included: nothing cached).", "",
             "| run | images | candidates | seconds | images/s |", "|---|---|---|---|---|"]
    for label, r in rows:
        lines.append(f"| {label} | {r['images']} | {r['candidates']} | {r['seconds']:.1f} | "
                     f"{r['images'] / r['seconds']:.3f} |")
    speedup = rows[0][1]["seconds"] / rows[1][1]["seconds"]
    lines += ["", f"torchrun with 2 ranks: {speedup:.2f}x the single process on this "
              f"{os.cpu_count()}-core machine."]
    body = "## Batch auto-labelling and review (`bench/autolabel.py`)\n\n" + "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", "autolabel", body)
    if not args.no_review:       # the window's half: its own section, written by that module
        import review_speed
        review = review_speed.section(review_speed.measure())
        print(review)
        if not args.no_write:
            write_section(ROOT / "docs" / "benchmarks.md", "review-speed", review)


if __name__ == "__main__":
    main()
