"""The promptless engines against segment everything (issues 15, 16), called by
bench/proposals.py: PMG-SAM (timm Hiera-B+ and the official U²-Net at full size, its
trainable head) and IP-SAM (SAM 2 with the LoRA merged, its heads) against our sam2-amg
32x32 on the same SAM 2 size and against one plain SAM 2 embedding. Every network has
RANDOM weights (none can be downloaded here), so the times are the architectures' cost,
not the quality of any answer.

Each row is one fresh process that builds the model (untimed), then runs the engine once
on the 1024x768 crop, split into two phases:
- the embedding: SAM 2's image encoder (sam2-amg: `embed`; IP-SAM: its LoRA-merged
  encoder, up to the end of `image_encoder`); PMG-SAM: both frozen encoders (up to its
  trainable head);
- after the embedding: everything else the engine does to give proposals (sam2-amg:
  `propose`; IP-SAM and PMG-SAM: the heads, then `propose`).
The split is taken by a forward hook on the module where the embedding ends, so the
engines' own `embed` / `propose` run unchanged. Memory: RSS high-water growth over the
built model (end to end) and over the state at the split (after the embedding), from
/proc (VmHWM, reset by clear_refs).
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _proc import cpu_header, reset_peak, status_kib

ROOT = Path(__file__).resolve().parent.parent
PMG_ARCH = "hiera_b+"           # PMG-SAM's frozen Hiera is B+ only (timm hiera_base_plus_224)
ARCHS = ("hiera_t", "hiera_s", "hiera_b+", "hiera_l")
GOALS = {"pmg_time": 0.1, "ip_after": 0.05, "ip_vs_embedding": 1.3}


class Phases:
    """Wall time and RSS peak of the embedding and of what follows it, in this process."""

    def __init__(self):
        self.base = status_kib("VmRSS")
        self.split_at = None
        reset_peak()
        self.t0 = time.perf_counter()

    def split(self, *_):
        if self.split_at is None:          # the first time only (hooks may fire again)
            self.split_at = time.perf_counter()
            self.embed_peak = status_kib("VmHWM") - self.base
            self.mid = status_kib("VmRSS")
            reset_peak()

    def end(self) -> dict:
        t = time.perf_counter()
        if self.split_at is None:          # nothing after the embedding (plain SAM 2)
            self.split()
            t = self.split_at
        after_peak = status_kib("VmHWM") - self.mid
        return {"embed_s": self.split_at - self.t0, "after_s": t - self.split_at,
                "total_s": t - self.t0, "after_mib": after_peak / 1024,
                "total_mib": max(self.embed_peak, self.mid - self.base + after_peak) / 1024}


def _sam2(arch: str):
    from engines.hosts import build_sam2_architecture
    return build_sam2_architecture(arch)


def _pmg_engine():
    from engines.pmg_sam import (HIERA_B_PLUS, HieraBranch, PmgSam, PmgSamConfig, PmgSamEngine,
                                 PmgSamHead, U2NetEncoder, build_timm_hiera)
    cfg = PmgSamConfig()
    model = PmgSam(cfg, HieraBranch(build_timm_hiera(HIERA_B_PLUS), HIERA_B_PLUS), U2NetEncoder(),
                   PmgSamHead(cfg))
    return PmgSamEngine(model, backbone_key="bench", device="cpu"), model.head, "pre"


def _ip_engine(arch: str):
    from engines.ip_sam import IpSam, IpSamConfig, IpSamEngine
    model = IpSam.from_sam2(IpSamConfig(), _sam2(arch)).merge_lora()
    return IpSamEngine(model, backbone_key="bench", device="cpu"), model.image_encoder, "post"


def worker(engine: str, arch: str, setting: str, grid: str, amg_settings: dict) -> dict:
    """One row, in this process (`grid`: sam2-amg's points per side)."""
    import torch
    from proposals import photo_1024x768
    torch.manual_seed(0)
    image = photo_1024x768()
    for package in ("engines.hosts", "engines.ip_sam", "engines.pmg_sam", "engines.sam_amg"):
        importlib.import_module(package)     # the code's memory is not the model's
    before_build = status_kib("VmRSS")
    if engine == "pmg-sam" or engine == "ip-sam":
        proposer, module, when = _pmg_engine() if engine == "pmg-sam" else _ip_engine(arch)
        register = module.register_forward_pre_hook if when == "pre" else module.register_forward_hook
        phases = Phases()
        register(phases.split)
        emb = proposer.embed(image)
        t_map = time.perf_counter()
        out = proposer.propose(emb)
        instances_s = time.perf_counter() - t_map     # the map's components, part of "after"
    else:                                  # sam2-amg, or one plain SAM 2 embedding
        from engines.hosts import Sam2Engine
        from engines.sam_amg import Sam2AmgEngine
        host = Sam2Engine(_sam2(arch), backbone_key="bench", device="cpu")
        amg = Sam2AmgEngine(host)
        phases = Phases()
        emb = amg.embed(image)
        out = None
        if engine == "sam2-amg":
            phases.split()
            out = amg.propose(emb, {"points_per_side": int(grid), **amg_settings[setting]})
    row = phases.end()
    if engine == "pmg-sam" or engine == "ip-sam":
        row["instances_s"] = instances_s
    row["model_mib"] = (phases.base - before_build) / 1024       # the built model's RSS
    row["proposals"] = None if out is None else len(out)
    return row


def flops_worker(arch: str) -> dict:
    """GFLOP of each part of IP-SAM's work after the embedding (torch's FlopCounterMode,
    one untimed pass of the heads on real-size encoder outputs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    engine, _, _ = _ip_engine(arch)
    model = engine.model.requires_grad_(False)     # torch's module tracker wants no grad leaves
    torch.manual_seed(0)
    with torch.no_grad():
        fpn = model.encode(torch.randn(1, 3, model.cfg.image_size, model.cfg.image_size))
        with FlopCounterMode(display=False) as counter:
            model.decode(fpn)
    counts = counter.get_flop_counts()          # keyed by the top-level modules' class names
    parts = {name: sum(counts.get(cls, {}).values()) / 1e9 for name, cls in (
        ("spg", "SelfPromptGenerator"), ("psg", "PromptSpaceGating"), ("decoder", "TaskDecoder"),
        ("lateral", "LateralInhibition"), ("refine", "RefinementHead"))}
    parts["total"] = sum(counts["Global"].values()) / 1e9
    return parts


def rows_for(arch: str) -> list[tuple[str, str, str]]:
    rows = [("sam2", arch, "-"), ("sam2-amg", arch, "defaults"), ("sam2-amg", arch, "filters off"),
            ("ip-sam", arch, "-")]
    return rows + ([("pmg-sam", arch, "-")] if arch == PMG_ARCH else [])


def _spawn(args: list[str]) -> dict:
    cmd = [sys.executable, str(ROOT / "bench" / "proposals.py"), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_all(archs: list[str], runs: int, flops: bool = True, grid: int = 32) -> dict:
    rows, parts = [], {}
    for arch in archs:
        if arch not in ARCHS:
            raise SystemExit(f"--promptless-archs: {arch!r} is not a SAM 2 size ({', '.join(ARCHS)})")
        for engine, a, setting in rows_for(arch):
            samples = []
            for _ in range(runs):
                samples.append(_spawn(["--promptless-worker", engine, a, setting, str(grid)]))
                print(engine, a, setting, samples[-1], file=sys.stderr, flush=True)
            row = {k: float(np.median([s[k] for s in samples])) for k in samples[0] if k != "proposals"}
            row.setdefault("instances_s", None)
            rows.append({"engine": engine, "arch": a, "setting": setting, "runs": runs,
                         "proposals": samples[0]["proposals"], **row})
        if flops:
            parts[arch] = _spawn(["--promptless-flops", arch])
            print("ip-sam flops", arch, parts[arch], file=sys.stderr, flush=True)
    return {"rows": rows, "flops": parts, "grid": grid}


def _masks_mib(n: int | None) -> float:
    """What n boolean masks at the photo's size hold (random heads: up to max_instances)."""
    return (n or 0) * 1024 * 768 / 2**20


def _verdict(ratio: float, goal: float) -> str:
    return f"{ratio:.3f}x (goal <= {goal}x: {'met' if ratio <= goal else 'NOT met'})"


def verdicts(rows: list[dict]) -> list[str]:
    lines = []
    for arch in dict.fromkeys(r["arch"] for r in rows):
        get = {(r["engine"], r["setting"]): r for r in rows if r["arch"] == arch}
        amg = [(s, get[("sam2-amg", s)]) for s in ("defaults", "filters off") if ("sam2-amg", s) in get]
        if ("pmg-sam", "-") in get:
            pmg = get[("pmg-sam", "-")]
            for s, a in amg:
                mem = "below" if pmg["total_mib"] < a["total_mib"] else "NOT below"
                held = pmg["model_mib"] + pmg["total_mib"], a["model_mib"] + a["total_mib"]
                lines.append(f"- Issue 15, {arch}, AMG {s}: PMG-SAM end to end "
                             f"{_verdict(pmg['total_s'] / a['total_s'], GOALS['pmg_time'])} of "
                             f"sam2-amg's; peak {pmg['total_mib']:.0f} MiB vs {a['total_mib']:.0f}: "
                             f"{mem} AMG's (goal: below; of PMG-SAM's, its {pmg['proposals']} "
                             f"boolean masks take {_masks_mib(pmg['proposals']):.0f}); with the "
                             f"models' weights {held[0]:.0f} vs {held[1]:.0f} MiB")
        if ("ip-sam", "-") in get:
            ip = get[("ip-sam", "-")]
            for s, a in amg:
                lines.append(f"- Issue 16, {arch}, AMG {s}: IP-SAM after the embedding "
                             f"{_verdict(ip['after_s'] / a['after_s'], GOALS['ip_after'])} of "
                             "sam2-amg's")
            if ("sam2", "-") in get:
                ratio = ip["total_s"] / get[("sam2", "-")]["total_s"]
                lines.append(f"- Issue 16, {arch}: IP-SAM end to end "
                             f"{_verdict(ratio, GOALS['ip_vs_embedding'])} of one plain SAM 2 "
                             "embedding")
    return lines


def table(result: dict) -> str:
    rows = result["rows"]
    lines = ["## Promptless Auto: PMG-SAM and IP-SAM against segment everything "
             "(`bench/proposals.py`)", "",
             f"{cpu_header()}; torch threads as set by "
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; full-size "
             "architectures with **RANDOM weights** (PMG-SAM: timm Hiera-B+ and U²-Net plus a "
             "random head; IP-SAM: SAM 2 with the LoRA merged plus random heads), so proposal "
             "counts mean nothing; one 1024x768 crop of `cars.jpg`; sam2-amg at "
             f"{result['grid']}x{result['grid']}; median "
             f"of {rows[0]['runs']} runs, each in its own process. Embedding: SAM 2's image "
             "encoder (PMG-SAM: both frozen encoders); after: everything else up to the "
             "proposals (of which instances: the probability map's connected components, "
             "`propose`; random heads give a noisy map with many). Peak: RSS high-water "
             "growth over the built model (end to end) and over the state when the embedding "
             "is done (after); model: the RSS its weights take.", "",
             "| engine | SAM 2 size | AMG filters | embedding (s) | after (s) | of which instances (s) "
             "| end to end (s) | peak after (MiB) | peak end to end (MiB) | model (MiB) | proposals |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        after = "-" if r["engine"] == "sam2" else f"{r['after_s']:.2f}"
        inst = "-" if r["instances_s"] is None else f"{r['instances_s']:.2f}"
        lines.append(f"| {r['engine']} | {r['arch']} | {r['setting']} | {r['embed_s']:.2f} | "
                     f"{after} | {inst} | {r['total_s']:.2f} | {r['after_mib']:.0f} | {r['total_mib']:.0f} | "
                     f"{r['model_mib']:.0f} | "
                     f"{'-' if r['proposals'] is None else r['proposals']} |")
    lines += ["", "Verdicts (time ratios, end to end includes the embedding on both sides)"
              + ("" if result["grid"] == 32 else f"; sam2-amg at {result['grid']}x{result['grid']}, "
                 "not the goals' 32x32: a smoke run, these verdicts do not count") + ":", ""]
    lines += verdicts(rows)
    for arch, parts in result["flops"].items():
        split = ", ".join(f"{k} {v:.1f}" for k, v in parts.items() if k != "total")
        lines.append(f"- IP-SAM's work after the embedding, {arch}: {parts['total']:.1f} GFLOP "
                     f"(FlopCounterMode: {split}; the rest is SAM 2's frozen prompt encoder)")
    return "\n".join(lines) + "\n"
