"""Benchmark (not a test): click-to-preview latency in the real window, cache warm.

For the classic engine and the full-size SAM ViT-B / SAM 2.1 Hiera-T architectures (random
weights, seeded: timing only), each in a fresh process (bench/_click_worker.py): the window
runs offscreen on the bundled sample photos; after the first image is embedded, real mouse
press/release events are sent to the canvas at seeded positions, and the time runs from
just before the press to the end of the first canvas paint that shows the answer. Clicks
are timed twice: while the next images are still embedded ahead ("prefetch running") and
after ("idle"). Then D / A key presses switch to images embedded ahead: time to the new
image painted with its "ready" event in.

    .venv/bin/python bench/click_latency.py                 # ~3-5 min on 2 cores
    .venv/bin/python bench/click_latency.py --engines hiera_t --clicks 10 --no-write

Writes its section between the click-latency markers of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).resolve().parent / "_click_worker.py"
DOC = ROOT / "docs" / "benchmarks.md"
ENGINES = ("classic", "vit_b", "hiera_t")
LABELS = {"classic": "classic (no model)", "vit_b": "SAM ViT-B", "hiera_t": "SAM 2.1 Hiera-T"}
GOAL_MS = 100.0
GOAL_ENGINES = {"vit_b", "hiera_t"}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def stats(values: list[float]) -> tuple[float, float] | None:
    """(median, p95), p95 by numpy's linear interpolation."""
    if not values:
        return None
    x = np.asarray(values, float)
    return float(np.median(x)), float(np.percentile(x, 95))


def cell(s: tuple[float, float] | None) -> str:
    return "—" if s is None else f"{s[0]:.0f} ({s[1]:.0f})"


def run_engine(engine: str, folder: Path, clicks: int, seed: int) -> dict:
    cmd = [sys.executable, str(WORKER), engine, str(folder), "--clicks", str(clicks),
           "--seed", str(seed)]
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"click_latency: the {engine} run failed (exit {proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def summarise(result: dict) -> dict:
    by_phase = {ph: [c["ms"] for c in result["clicks"] if c["phase"] == ph]
                for ph in ("idle", "prefetch running")}
    idle_engine = [c["engine_ms"] for c in result["clicks"]
                   if c["phase"] == "idle" and c["engine_ms"] is not None]
    share = [c["ms"] - c["engine_ms"] for c in result["clicks"]
             if c["phase"] == "idle" and c["engine_ms"] is not None]
    return {"engine": result["engine"], "idle": stats(by_phase["idle"]), "share": stats(share),
            "busy": stats(by_phase["prefetch running"]), "engine_ms": stats(idle_engine),
            "switch": stats([s["ms"] for s in result["switches"]]),
            "n_idle": len(by_phase["idle"]), "n_busy": len(by_phase["prefetch running"]),
            "n_switch": len(result["switches"]),
            "empty": sum(c["empty"] for c in result["clicks"]),
            "first_embed_s": result["first_embed_s"]}


def report(rows: list[dict], meta: dict) -> str:
    lines = [
        "## Click latency in the window (`bench/click_latency.py`)",
        "",
        "**Weights are random** (seeded): timing only, the masks mean nothing.",
        "",
        f"- Run: {meta['date']} on {meta['cpu']}, {meta['cores']} cores, "
        f"{platform.platform()}, Python {platform.python_version()}, torch {meta['torch']} "
        f"({meta['threads']} threads), Qt offscreen.",
        f"- Load average (1/5/15 min) {meta['load_start']} at start, {meta['load_end']} at end"
        " (other processes share the 2 cores: the numbers are noisy).",
        "- Each engine in a fresh process, the real `MainWindow` (1280x800) on the 4 bundled "
        "sample photos (first image 512x512), engine session built as `annotator gui` builds "
        "it (`tune_allocator()`, memory cache; the SAM engines are wired in directly "
        "because random weights are not installable models).",
        f"- Click: a fresh single positive click (previous prompt cleared), a real mouse "
        f"press + release sent to the canvas viewport at seeded positions; time from just "
        f"before the press to the end of the first canvas paint that shows the answer "
        f"(`time.perf_counter`). Clicks that found no object count to when the answer was "
        f"handled ({meta['empty']} of {meta['total']}).",
        "- Idle = after every image was embedded ahead; prefetch running = while the "
        "background worker embeds the next images (it pauses between encoder blocks).",
        "- Switch: D / A key to an image already embedded ahead, until the new image is "
        "painted and its \"ready\" event has arrived (clicks are then answered at once).",
        f"- Command: `{meta['command']}`",
        "",
        "Milliseconds, median (p95).",
        "",
        "Engine = the service's time for the request (worker takes it -> answer ready); "
        "window = click minus engine, per click (queueing, event hand-over, drawing the "
        "preview and painting).",
        "",
        "| engine | click, idle | engine | window | click, prefetch running | switch to "
        "prefetched image | first embedding s | clicks idle / busy, switches |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {LABELS[r['engine']]} | {cell(r['idle'])} | {cell(r['engine_ms'])} | "
                     f"{cell(r['share'])} | "
                     f"{cell(r['busy'])} | {cell(r['switch'])} | {r['first_embed_s']:.1f} | "
                     f"{r['n_idle']} / {r['n_busy']}, {r['n_switch']} |")
    goal_rows = [r for r in rows if r["engine"] in GOAL_ENGINES]
    if goal_rows:
        lines += ["", f"Goals on this CPU: click p95 <= {GOAL_MS:.0f} ms (idle) and switch to "
                  f"a prefetched image <= {GOAL_MS:.0f} ms.", "",
                  "| engine | click p95 <= 100 ms | switch p95 <= 100 ms |", "|---|---|---|"]
        for r in goal_rows:
            ok = lambda s: "—" if s is None else ("yes" if s[1] <= GOAL_MS else "**no**")  # noqa
            lines.append(f"| {LABELS[r['engine']]} | {ok(r['idle'])} | {ok(r['switch'])} |")
    return "\n".join(lines) + "\n"


def write_section(path: Path, body: str) -> None:
    from _docs import write_section as write
    write(path, "click-latency", body)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--clicks", type=int, default=30, help="idle clicks per engine")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="don't touch docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.clicks < 1:
        parser.error("--clicks must be at least 1")
    load_start = load_average()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="click-latency-") as tmp:
        folder = Path(tmp) / "samples"
        folder.mkdir()
        for f in sorted((ROOT / "resources" / "samples").iterdir()):
            if f.suffix.lower() in (".png", ".jpg", ".jpeg"):
                shutil.copy(f, folder / f.name)
        for engine in args.engines:
            print(f"{engine}: running (load {load_average()})...", flush=True)
            result = run_engine(engine, folder, args.clicks, args.seed)
            results.append(result)
            row = summarise(result)
            rows.append(row)
            print(f"  click idle median/p95 {cell(row['idle'])} ms, engine {cell(row['engine_ms'])}"
                  f" ms, during prefetch {cell(row['busy'])} ms, switch {cell(row['switch'])} ms, "
                  f"first embedding {row['first_embed_s']:.1f} s", flush=True)
    meta = {"date": date, "cpu": cpu_model(), "cores": os.cpu_count(),
            "torch": results[0]["torch"], "threads": results[0]["torch_threads"],
            "load_start": load_start, "load_end": load_average(),
            "empty": sum(r["empty"] for r in rows),
            "total": sum(r["n_idle"] + r["n_busy"] for r in rows),
            "command": " ".join([".venv/bin/python", "bench/click_latency.py",
                                 *map(shlex.quote, sys.argv[1:] if argv is None else argv)])}
    text = report(rows, meta)
    print(text)
    if not args.no_write:
        write_section(DOC, text)
        print(f"wrote the click-latency section of {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
