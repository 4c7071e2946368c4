"""Paired bootstrap of plugin − host over objects (issue 21: report a difference with its
uncertainty, not two means).

Both engines answered the same prompts on the same objects, so the per-object
differences are resampled together: B resamples of the n objects with replacement
(seeded, so a rerun gives the same interval), the mean difference of each, and the
percentile interval of those means. Units are those of the scores (% for
training/evaluate.py's).
"""
from __future__ import annotations

import math

import numpy as np

METRICS = ("miou", "mbiou", "st")
_CHUNK = 2_000_000   # index draws held at once (resamples x objects), ~16 MB


def paired_bootstrap(host, plugin, resamples: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict:
    """{"diff", "lo", "hi", "n"}: mean(plugin − host) and its percentile interval.
    Pairs where either score is missing (None / NaN) are dropped; with none left all
    three numbers are NaN and n is 0. With one pair the interval is that difference."""
    h, p = np.asarray(host, dtype=float), np.asarray(plugin, dtype=float)
    if h.shape != p.shape or h.ndim != 1:
        raise ValueError(f"paired scores must be two lists of one length, got {h.shape} and {p.shape}")
    if resamples < 1 or not 0 < level < 1:
        raise ValueError(f"resamples must be >= 1 and 0 < level < 1, got {resamples}, {level}")
    d = (p - h)[np.isfinite(p - h)]
    n = int(d.size)
    if n == 0:
        return {"diff": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // n)
    means = np.concatenate([d[rng.integers(0, n, (min(rows, resamples - start), n))].mean(axis=1)
                            for start in range(0, resamples, rows)])
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return {"diff": float(d.mean()), "lo": float(lo), "hi": float(hi), "n": n}


def add_paired(results: dict, plugin: str, host: str, resamples: int = 2000,
               seed: int = 0) -> dict:
    """Stores results[plugin][protocol]["paired"] for every protocol both engines have:
    the mIoU difference at the top level (diff, lo, hi, n), the other metrics under their
    names, and which engine was the host. Returns `results`."""
    for protocol, scores in results[plugin].items():
        other = results[host].get(protocol)
        if other is None:
            continue
        mine, theirs = scores["per_object"], other["per_object"]
        if [o["object"] for o in mine] != [o["object"] for o in theirs]:
            raise ValueError(f"{protocol}: {plugin} and {host} were scored on different objects")
        paired = {"host": host}
        for metric in METRICS:
            stats = paired_bootstrap([_num(o[metric]) for o in theirs],
                                     [_num(o[metric]) for o in mine], resamples, seed)
            if metric == "miou":
                paired.update(stats)
            elif stats["n"]:
                paired[metric] = stats
        scores["paired"] = paired
    return results


def _num(value) -> float:
    return math.nan if value is None else float(value)


def format_paired(results: dict) -> str:
    """Markdown: one row per protocol of every engine that has a paired comparison."""
    rows = []
    for plugin, per in results.items():
        for protocol, scores in per.items():
            paired = scores.get("paired")
            if not paired:
                continue
            host = paired["host"]
            cells = [protocol, f"{host} {results[host][protocol]['miou']:.1f}",
                     f"{plugin} {scores['miou']:.1f}", _interval(paired)]
            cells += [_interval(paired[m]) if m in paired else "-" for m in METRICS[1:]]
            rows.append("| " + " | ".join([*cells, str(paired["n"])]) + " |")
    if not rows:
        return ""
    head = ("| protocol | host mIoU | plugin mIoU | Δ mIoU [95% CI] | Δ mBIoU [95% CI] "
            "| Δ ST [95% CI] | objects |")
    return "\n".join([head, "|---|---|---|---|---|---|---|", *rows])


def _interval(stats: dict) -> str:
    if stats["n"] == 0:
        return "-"
    return f"{stats['diff']:+.1f} [{stats['lo']:+.1f}, {stats['hi']:+.1f}]"
