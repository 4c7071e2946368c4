"""Benchmark (not a test): peak memory when a huge image is opened.

Writes a synthetic WxW image (default 20000x20000: a grey gradient with a dark disc in
the middle) as PNG and JPEG, then runs each case in a fresh Python process and reads that
process's peak resident memory (VmHWM in /proc/self/status, checked against
getrusage(RUSAGE_CHILDREN) in this process):

- load full: `load_image(path)`, the window's display copy;
- load for engine: `load_image(path, max_side=1024)`, what an engine needs;
- segment: `annotator segment IMAGE --point X,Y --engine classic --no-cache` in-process;
- service: `EngineService` (as the window runs it) with the classic engine: open + one click.

Ratio = peak / decoded size (W x H x 3 bytes). Prints a markdown table and replaces the
huge-image section of docs/benchmarks.md (between its markers).

    .venv/bin/python bench/huge_image_memory.py [--side 20000] [--cases ...] [--no-doc]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _proc import cpu_header, status_kib

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
CASES = ("load-full", "load-engine", "segment", "service")
FORMATS = ("png", "jpeg")


def make_images(folder: Path, side: int) -> dict[str, Path]:
    import cv2
    import numpy as np
    paths = {"png": folder / f"huge{side}.png", "jpeg": folder / f"huge{side}.jpg"}
    if all(p.exists() for p in paths.values()):
        return paths
    ramp = np.linspace(90, 230, side, dtype=np.float32).astype(np.uint8)
    image = np.empty((side, side, 3), np.uint8)
    image[:] = ramp[None, :, None]
    cv2.circle(image, (side // 2, side // 2), side // 5, (40, 30, 20), -1)
    cv2.imwrite(str(paths["png"]), image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    cv2.imwrite(str(paths["jpeg"]), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return paths


# ---- worker (one case, one fresh process) -----------------------------------------------

def _service_case(path: Path, side: int) -> None:
    import threading
    from annotator.core.service import EngineService
    from engines.files import EmbeddingCache
    from engines.classic import ClassicEngine
    from engines.types import Prompt
    import numpy as np

    engine, done = ClassicEngine(), threading.Event()
    answers = []

    def on_event(event):
        if event.kind in ("prediction", "prediction_failed", "dropped"):
            answers.append(event)
            done.set()

    class Routed:
        name = "classic"
        def __init__(self): self.engine = engine

    service = EngineService(lambda task, fine: Routed(), EmbeddingCache(memory_mb=0, disk=False),
                            on_event)
    service.set_image(1, path)
    service.predict(1, Prompt(points=np.array([[side / 2, side / 2]], np.float32),
                              labels=np.array([1], np.int32)))
    if not done.wait(600):
        raise RuntimeError("no answer from the service in 600 s")
    service.shutdown()
    if answers[0].kind != "prediction":
        raise RuntimeError(str(answers[0]))


def worker(case: str, path: Path, side: int) -> dict:
    sys.path.insert(0, str(REPO))
    import numpy as np  # noqa: F401  (the baseline includes what every case imports)
    from annotator.core.images import load_image
    if case in ("segment", "service"):   # code, not data: imported before the start mark
        import annotator.cli  # noqa: F401
        import annotator.commands.segment  # noqa: F401
        import annotator.core.masks_io  # noqa: F401
        import annotator.core.service  # noqa: F401
        import engines.classic  # noqa: F401
        import engines.router  # noqa: F401
    base = status_kib("VmRSS")
    t0 = time.perf_counter()
    if case == "load-full":
        shape = load_image(path).shape
    elif case == "load-engine":
        shape = load_image(path, max_side=1024).shape
    elif case == "segment":
        from annotator.cli import main
        with tempfile.TemporaryDirectory() as tmp:
            rc = main(["segment", str(path), "--point", f"{side // 2},{side // 2}",
                       "--engine", "classic", "--no-cache", "--out", f"{tmp}/m.png"])
        if rc not in (0, None):
            raise RuntimeError(f"segment exited {rc}")
        shape = None
    else:
        _service_case(path, side)
        shape = None
    return {"case": case, "base_kib": base, "peak_kib": status_kib("VmHWM"),
            "seconds": time.perf_counter() - t0, "shape": shape}


# ---- parent -----------------------------------------------------------------------------

def run_case(case: str, path: Path, side: int) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([sys.executable, __file__, "--worker", case, str(path),
                           "--side", str(side)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if proc.returncode != 0:
        return {"case": case, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest child so far: it only confirms a new maximum
    result["rusage_kib"] = after if after > before else None
    return result


def table(results: list[dict], side: int) -> str:
    decoded = side * side * 3
    rows = ["| image | case | peak RSS MiB | x decoded | above start MiB | x decoded | s |",
            "|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['format']} | {r['case']} | error: {r['error']} | | | | |")
            continue
        peak, above = r["peak_kib"] * 1024, (r["peak_kib"] - r["base_kib"]) * 1024
        rows.append(f"| {r['format']} | {r['case']} | {peak / 2**20:,.0f} | {peak / decoded:.2f} "
                    f"| {above / 2**20:,.0f} | {above / decoded:.2f} | {r['seconds']:.1f} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=20000)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "huge-image-bench")
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--worker", nargs=2, metavar=("CASE", "IMAGE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], Path(args.worker[1]), args.side)))
        return
    args.folder.mkdir(parents=True, exist_ok=True)
    paths = make_images(args.folder, args.side)
    results = []
    for fmt in args.formats.split(","):
        for case in args.cases.split(","):
            r = run_case(case, paths[fmt], args.side)
            r["format"] = fmt
            print(json.dumps(r), flush=True)
            results.append(r)
    decoded = args.side * args.side * 3
    body = "\n".join([
        "## Huge images: peak memory (`bench/huge_image_memory.py`)", "",
        f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {cpu_header()}.",
        f"Image: synthetic {args.side}x{args.side} RGB (decoded size {decoded / 2**20:,.0f} MiB = "
        "W x H x 3 bytes), PNG (compression 1) and JPEG (quality 90). Each case runs in a fresh "
        "process; peak = its VmHWM (/proc/self/status), including the interpreter and libraries "
        "it imported (\"above start\" subtracts the resident size just before the case). "
        "Goal: peak <= 2.5x the decoded size.", "",
        table(results, args.side), "",
        f"Command: `.venv/bin/python bench/huge_image_memory.py --side {args.side}`.",
    ])
    print(body)
    if not args.no_doc:
        sys.path.insert(0, str(REPO))
        from bench._docs import write_section
        write_section(DOC, "huge-images", body)


if __name__ == "__main__":
    main()
