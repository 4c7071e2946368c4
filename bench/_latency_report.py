"""Tables and the docs section for bench/engine_latency.py (no torch here).

`format_report` turns the workers' JSON results into markdown; `write_section` puts it
between this benchmark's markers in docs/benchmarks.md and leaves the rest of the file alone.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

GOAL_ENCODER_RATIO = 0.3            # CPUs with bf16 units (AMX or AVX512-BF16)
GOAL_ENCODER_RATIO_NO_BF16 = 0.6    # CPUs without
CPU_FLAGS = ("avx512_bf16", "amx_bf16", "avx512_vnni")
GOAL_CLICK_RATIO = 0.6
GOAL_CLICK_P95_MS = 40.0
GOAL_CACHE_HIT_MS = 50.0
NOISY_LOAD_CORES = 0.25   # other processes' average busy cores above which we warn


def machine() -> dict:
    """CPU model, core count and RAM of this machine (Linux /proc; best effort elsewhere)."""
    cpu = platform.processor() or platform.machine()
    ram_gib, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == (platform.processor() or platform.machine()):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = int(line.split()[1]) / 2**20
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "ram_gib": ram_gib,
            "os": platform.platform(), "python": platform.python_version(),
            "flags": {f: f in flags for f in CPU_FLAGS},
            "bf16_units": bool(flags & {"avx512_bf16", "amx_bf16"})}


def stats(seconds: list[float] | None, scale: float = 1.0) -> tuple[float, float] | None:
    """(median, p95) of the samples times `scale`; p95 is numpy's linear interpolation."""
    if not seconds:
        return None
    x = np.asarray(seconds, dtype=float) * scale
    return float(np.median(x)), float(np.percentile(x, 95))


def _cell(s: tuple[float, float] | None, fmt: str) -> str:
    return "—" if s is None else f"{s[0]:{fmt}} ({s[1]:{fmt}})"


def _ratio(ours, ref) -> float | None:
    return None if ours is None or ref is None or ref[0] == 0 else ours[0] / ref[0]


def summarise(arch: str, ref: dict, ours: dict, asked: str = "torch-fp32") -> dict:
    """One row's numbers; `ref`/`ours` are worker results or {"error": ...}; `asked`: the
    runtime our side was asked for ("auto": the calibration's pick)."""
    row = {"arch": arch, "ref_error": ref.get("error"), "ours_error": ours.get("error"),
           "asked": asked, "runtime": ours.get("runtime", asked),
           "rel_error": ((ours.get("calibration") or {}).get("rel_error") or {}).get(ours.get("runtime"))}
    row["enc_ref"], row["enc_ours"] = stats(ref.get("encoder_s")), stats(ours.get("encoder_s"))
    row["click_ref"] = stats(ref.get("click_s"), 1000)
    row["click_ours"] = stats(ours.get("click_s"), 1000)
    cache = ours.get("cache") or {}
    row["hit_mem"], row["hit_disk"] = stats(cache.get("memory_s"), 1000), stats(cache.get("disk_s"), 1000)
    row["disk_decode_equal"] = cache.get("disk_decode_equal")
    row["enc_ratio"] = _ratio(row["enc_ours"], row["enc_ref"])
    row["click_ratio"] = _ratio(row["click_ours"], row["click_ref"])
    row["agreement"] = ours.get("agreement")
    row["params"] = (ours.get("fingerprint") or ref.get("fingerprint") or {}).get("params")
    fp_ref, fp_ours = ref.get("fingerprint"), ours.get("fingerprint")
    row["same_weights"] = None if not (fp_ref and fp_ours) else fp_ref["sha256"] == fp_ours["sha256"]
    row["fingerprint"] = (fp_ours or fp_ref or {}).get("sha256")
    row["rss"] = (ref.get("peak_rss_mib"), ours.get("peak_rss_mib"))
    row["other_load"] = (ref.get("other_load_cores"), ours.get("other_load_cores"))
    row["encoder_runs"] = len(ours.get("encoder_s") or ref.get("encoder_s") or [])
    return row


def _agreement_cell(row: dict) -> str:
    a = row["agreement"]
    if not a:
        return "—"
    if "error" in a:
        return "n/a"
    worst = max(a["mismatched_pixels"], default=0)
    if worst == 0:
        return f"identical ({a['clicks']} clicks)"
    differing = sum(1 for n in a["mismatched_pixels"] if n)
    return (f"{differing} of {a['clicks']} clicks differ, worst {worst} px "
            f"({100 * a['max_fraction']:.2g}%)")


def _weights_cell(row: dict) -> str:
    if row["same_weights"] is None:
        return "—"
    return f"same `{row['fingerprint']}`" if row["same_weights"] else "**DIFFER**"


def _rss_cell(row: dict) -> str:
    return " / ".join("—" if v is None else f"{v:,.0f}" for v in row["rss"])


def _load_cell(row: dict) -> str:
    return " / ".join("—" if v is None else f"{v:.2f}" for v in row["other_load"])


def _yes(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


def results_table(rows: list[dict]) -> str:
    head = ("| arch | params | our runtime | encoder ref s, median (p95) | encoder ours s | ratio "
            "| click ref ms, median (p95) | click ours ms | ratio "
            "| cache hit ms, memory / disk (median) | our best mask vs ref's (default path) | weights | peak RSS MiB ref / ours | other load, cores, ref / ours |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        params = "—" if r["params"] is None else f"{r['params'] / 1e6:.1f} M"
        enc_ref = f"failed: {r['ref_error']}" if r["ref_error"] else _cell(r["enc_ref"], ".2f")
        enc_ours = f"failed: {r['ours_error']}" if r["ours_error"] else _cell(r["enc_ours"], ".2f")
        click_ref = "—" if r["ref_error"] else _cell(r["click_ref"], ".1f")
        click_ours = "—" if r["ours_error"] else _cell(r["click_ours"], ".1f")
        ratio = lambda v: "—" if v is None else f"{v:.2f}x"   # noqa: E731
        hit = "—" if r["hit_mem"] is None else f"{r['hit_mem'][0]:.1f} / {r['hit_disk'][0]:.1f}"
        if r["disk_decode_equal"] is False:
            hit += " (disk hit decodes differently!)"
        runtime = r["runtime"] + (" (calibrated pick)" if r["asked"] == "auto" else "")
        lines.append(f"| {r['arch']} | {params} | {runtime} | {enc_ref} | {enc_ours} | {ratio(r['enc_ratio'])} "
                     f"| {click_ref} | {click_ours} | {ratio(r['click_ratio'])} | {hit} "
                     f"| {_agreement_cell(r)} | {_weights_cell(r)} | {_rss_cell(r)} | {_load_cell(r)} |")
    return "\n".join(lines)


def goals_table(rows: list[dict], bf16_units: bool = True) -> str:
    goal = GOAL_ENCODER_RATIO if bf16_units else GOAL_ENCODER_RATIO_NO_BF16
    lines = [f"| arch | our runtime | encoder <= {goal}x | click <= {GOAL_CLICK_RATIO}x "
             f"| click p95 <= {GOAL_CLICK_P95_MS:.0f} ms | cache hit <= {GOAL_CACHE_HIT_MS:.0f} ms "
             "(memory / disk p95) | peak RSS <= torch fp32's |", "|---|---|---|---|---|---|---|"]
    fp32_rss = {r["arch"]: r["rss"][1] for r in rows if r["asked"] == "torch-fp32"}
    for r in rows:
        enc = None if r["enc_ratio"] is None else r["enc_ratio"] <= goal
        click = None if r["click_ratio"] is None else r["click_ratio"] <= GOAL_CLICK_RATIO
        p95 = None if r["click_ours"] is None else r["click_ours"][1] <= GOAL_CLICK_P95_MS
        hit = None if r["hit_mem"] is None else \
            f"{_yes(r['hit_mem'][1] <= GOAL_CACHE_HIT_MS)} / {_yes(r['hit_disk'][1] <= GOAL_CACHE_HIT_MS)}"
        base, mine = fp32_rss.get(r["arch"]), r["rss"][1]
        rss = None if base is None or mine is None else mine <= base * 1.02   # 2 %: RSS noise
        lines.append(f"| {r['arch']} | {r['runtime']} | {_yes(enc)} | {_yes(click)} | {_yes(p95)} "
                     f"| {hit or '—'} | {_yes(rss)} |")
    return "\n".join(lines)


def format_report(rows: list[dict], ctx: dict) -> str:
    """The whole markdown section (without markers)."""
    m = ctx["machine"]
    ram = "?" if m["ram_gib"] is None else f"{m['ram_gib']:.0f} GiB"
    threads = ", ".join(f"{k} {v}" for k, v in ctx["threads"].items()) or "?"
    tuned = {True: "on", False: "off (not glibc, or ANNOTATOR_MALLOC=default)", None: "?"}[ctx["tuned"]]
    load = " / ".join(f"{a:.2f}" for a in ctx["load_start"]) + " at start, " + \
        " / ".join(f"{a:.2f}" for a in ctx["load_end"]) + " at end (1/5/15 min)"
    worst_load = max((v for r in rows for v in r["other_load"] if v is not None), default=0.0)
    parts = [
        "## Engine latency (`bench/engine_latency.py`)",
        "",
        "**Weights are random** (`torch.manual_seed(0)` right before building, the same on both sides, "
        "checked by a parameter fingerprint): these numbers are for timing only; the masks mean nothing.",
        "",
        f"- Run: {ctx['date']} on {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable), {ram} RAM, "
        f"{m['os']}, Python {m['python']}, torch {ctx['torch']} (threads: {threads}).",
        "- CPU flags: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in m["flags"].items())
        + f": **{'a CPU with' if m['bf16_units'] else 'a CPU without'} bf16 units**, so the goals are "
        f"that class's (encoder <= {GOAL_ENCODER_RATIO if m['bf16_units'] else GOAL_ENCODER_RATIO_NO_BF16}x).",
        "- Our runtimes: `torch-fp32` is the fp32 path as before; `(calibrated pick)` is what "
        "`engines/runtime` picked on this machine (the calibration times torch fp32/bf16 and "
        "OpenVINO fp32/bf16 on the encoder and keeps the fastest within its feature-error bound; "
        "done once per architecture and machine, not timed here).",
        f"- Image: {ctx['image_desc']}, 1024x768 RGB, the same array on both sides.",
        f"- Clicks: {ctx['clicks']} single positive clicks at seeded random positions (one warm-up click first), "
        "`multimask_output=True`, each decoded to full-resolution masks. Encoder: "
        f"{ctx['runs_desc']} on the same image, numpy image in, features ready out.",
        "- Reference: `SamPredictor` / `SAM2ImagePredictor` (`set_image`, `predict`) in its own fresh "
        "process with default settings (glibc malloc untouched, default torch threads, "
        f"environment without MALLOC_*/LD_PRELOAD{ctx['stripped_env']}). Ours: `SamEngine` / `Sam2Engine` "
        f"(`embed`, `predict` with a one-point `Prompt`) in another fresh process, as the product runs "
        f"(`tune_allocator()` first: {tuned}).",
        "- Cache hit: key from the image's pixels (`image_digest`) + lookup through `EmbeddingCache`; "
        "memory = same cache, disk = a new `EmbeddingCache` on the same folder (as after a restart; "
        "OS file cache warm).",
        f"- Load average {load}."
        + (f" **Other processes kept up to {worst_load:.2f} of {m['usable_cores']} cores busy during "
           "a side's run (last column): those timings and ratios are noisy.**"
           if worst_load >= NOISY_LOAD_CORES else "")
        + (f" {ctx['note']}" if ctx.get("note") else ""),
        f"- Command: `{ctx['command']}`",
        "",
        "Ratio = ours median / reference median. Medians with p95 in parentheses (numpy's "
        "interpolated percentile; over 2-3 encoder runs it is close to the slowest run). "
        "Other load = CPU time that processes other than the benchmark used while that side ran "
        "(/proc/stat), in cores on average: torch's threads slow down sharply when they share "
        "the cores with anything.",
        "",
        results_table(rows),
        "",
        "Goals (ours against the reference measured in the same run):",
        "",
        goals_table(rows, m["bf16_units"]),
    ]
    return "\n".join(parts)


def write_section(path: Path, body: str) -> None:
    from _docs import write_section as write
    write(path, "engine-latency", body)
