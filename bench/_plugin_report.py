"""The plugin stage of bench/engine_latency.py: Stable-SAM and HQ-SAM click latency over
their host engine's, one fresh process per architecture (bench/_plugin_worker.py)."""
from __future__ import annotations

import datetime
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from _docs import write_section
from _latency_report import machine

WORKER = Path(__file__).resolve().parent / "_plugin_worker.py"
GOALS = {"stable-sam": 1.1, "hq-sam": 1.2}


def run_plugin_stage(image: Path, archs: list[str], clicks: int, docs: Path | None,
                     timeout: float = 1800) -> list[dict]:
    results = []
    for arch in archs:
        print(f"== plugins on {arch} ({clicks} points + {clicks} boxes per engine)", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, str(WORKER), "--arch", arch, "--clicks", str(clicks),
                               "--image", str(image)], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            results.append({"arch": arch, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    text = format_plugins(results, clicks)
    print(text)
    if docs is not None:
        write_section(docs, "plugin-latency", text)
    return results


def format_plugins(results: list[dict], clicks: int) -> str:
    m = machine()
    lines = [
        "## Plugin engines: click latency over their host",
        "",
        f"`bench/engine_latency.py` (plugin stage), {datetime.date.today()}, {m['cpu']}, "
        f"{m['cores']} cores. Full-size architectures with **random weights** (timing only); "
        f"one 1024x768 photo embedded once per engine, then {clicks} single clicks and {clicks} "
        "boxes, alternating host and plugin on the same prompts; median decode-to-mask time "
        "(p95 in brackets).",
        "",
        "| backbone | engine | click ms | box ms | host click ms | host box ms | ratio click / box | goal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        if "error" in res:
            lines.append(f"| {res['arch']} | error: {res['error']} | | | | | | |")
            continue
        host = res["times"]["host"]
        for name, t in res["times"].items():
            if name == "host":
                continue
            cell = lambda xs: f"{1000 * np.median(xs):.1f} ({1000 * np.percentile(xs, 95):.1f})"
            ratio = [np.median(t[k]) / np.median(host[k]) for k in ("point", "box")]
            lines.append(f"| {res['arch']} | {name} | {cell(t['point'])} | {cell(t['box'])} | "
                         f"{cell(host['point'])} | {cell(host['box'])} | "
                         f"{ratio[0]:.2f}x / {ratio[1]:.2f}x | <= {GOALS.get(name, '?')}x |")
    return "\n".join(lines)
