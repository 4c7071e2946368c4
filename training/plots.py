"""The experiments' figures (issue 21): learning curves from `annotator train --events`
files, host vs plugin with the paired bootstrap intervals from `annotator eval --json`
files, and example masks side by side. scripts/plot_experiments.py is the command.

matplotlib's object API on the Agg canvas only (no pyplot): no display, no global
backend switched under whoever imports this. Readers raise PlotInputError with one line
naming the file and what is wrong with it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .events import read_events


class PlotInputError(ValueError):
    """A missing or unreadable input; the message is one line naming the file."""


# -------------------------------------------------------------------- readers
def read_run(path: str | Path) -> dict:
    """{"name", "steps", "loss", "val": {metric: ([step], [value])}} of one training run:
    an events file, or a run folder holding one (`events.jsonl`, else its only *.jsonl).
    A resumed run appends to its file; a step seen twice keeps its last value."""
    path = Path(path)
    if path.is_dir():
        found = [path / "events.jsonl"] if (path / "events.jsonl").is_file() else sorted(path.glob("*.jsonl"))
        if len(found) != 1:
            raise PlotInputError(f"{path}: {'no' if not found else 'more than one'} events file "
                                 "(*.jsonl, from annotator train --events) in this folder")
        events_file, name = found[0], path.name
    elif path.is_file():
        events_file, name = path, path.parent.name if path.stem == "events" else path.stem
    else:
        raise PlotInputError(f"{path}: no such file or folder")
    try:
        events = [e for e in read_events(events_file) if isinstance(e, dict)]
    except (OSError, UnicodeDecodeError) as exc:
        raise PlotInputError(f"{events_file}: not a readable events file ({type(exc).__name__})") from None
    loss: dict[int, float] = {}
    val: dict[str, dict[int, float]] = {}
    for e in events:
        if e.get("event") == "step" and _is_num(e.get("step")) and _is_num(e.get("loss")):
            loss[int(e["step"])] = float(e["loss"])
        elif e.get("event") in ("validate", "done") and isinstance(e.get("metrics"), dict):
            step = e.get("step", max(loss, default=0))   # "done" is after the last step
            for key, value in e["metrics"].items():
                if key != "best_step" and _is_num(value) and _is_num(step):
                    val.setdefault(key, {})[int(step)] = float(value)
    if not loss:
        raise PlotInputError(f"{events_file}: no training steps in it "
                             "(not an `annotator train --events` file?)")
    steps = sorted(loss)
    return {"name": name, "steps": steps, "loss": [loss[s] for s in steps],
            "val": {k: (sorted(v), [v[s] for s in sorted(v)]) for k, v in val.items()}}


def read_eval(path: str | Path) -> dict:
    """An `annotator eval --json` file that has at least one host vs plugin comparison."""
    path = Path(path)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlotInputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlotInputError(f"{path}: not readable ({type(exc).__name__})") from None
    except json.JSONDecodeError as exc:
        raise PlotInputError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not paired_rows(results):
        raise PlotInputError(f"{path}: no host vs plugin comparison in it (an `annotator eval "
                             "--json` file of a plugin engine, without --no-baseline)")
    return results


def paired_rows(results) -> list[dict]:
    """One {"plugin", "host", "protocol", "host_miou", "plugin_miou", "diff", "lo", "hi",
    "n"} per protocol with a "paired" entry; [] for anything else."""
    rows = []
    if not isinstance(results, dict):
        return rows
    for plugin, per in results.items():
        for protocol, scores in (per.items() if isinstance(per, dict) else ()):
            paired = scores.get("paired") if isinstance(scores, dict) else None
            try:
                host = paired["host"]
                rows.append({"plugin": plugin, "host": host, "protocol": protocol,
                             "host_miou": float(results[host][protocol]["miou"]),
                             "plugin_miou": float(scores["miou"]), "n": int(paired["n"]),
                             **{k: float(paired[k]) for k in ("diff", "lo", "hi")}})
            except (KeyError, TypeError, ValueError):
                continue
    return rows


def _is_num(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


# -------------------------------------------------------------------- figures
def learning_curves(runs: list[dict], out: str | Path) -> Path:
    """Training loss (raw, faint, and a running mean) and every held-out metric per step."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    loss_ax, val_ax = fig.subplots(1, 2)
    colours = _colours(len(runs))
    for run, colour in zip(runs, colours):
        steps, loss = np.asarray(run["steps"]), np.asarray(run["loss"])
        loss_ax.plot(steps, loss, color=colour, alpha=0.25, linewidth=0.8)
        loss_ax.plot(steps, _running_mean(loss), color=colour, label=run["name"])
        shown = {m: v for m, v in run["val"].items() if m == "loss" or _is_miou(m)}
        for (metric, (vsteps, values)), style in zip(sorted(shown.items()), _STYLES * 10):
            ax = loss_ax if metric == "loss" else val_ax     # held-out loss beside the training loss
            ax.plot(vsteps, values, style, color=colour, label=f"{run['name']} held-out {metric}")
    loss_ax.set(xlabel="step", ylabel="training loss", title="training loss")
    if all(min(r["loss"]) > 0 and min(r["val"].get("loss", ([], [1]))[1]) > 0 for r in runs):
        loss_ax.set_yscale("log")
    val_ax.set(xlabel="step", ylabel="held-out mIoU", title="held-out validation (mIoU)")
    for ax in (loss_ax, val_ax):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if not val_ax.lines:
        val_ax.text(0.5, 0.5, "no validation events", ha="center", va="center",
                    transform=val_ax.transAxes)
    return _save(fig, out)


def paired_bars(evals: list[tuple[str, dict]], out: str | Path) -> Path:
    """Left: host and plugin mIoU per (plugin, protocol). Right: plugin − host with its
    paired bootstrap 95% interval (the question the experiment asks)."""
    rows = [(label, r) for label, results in evals for r in paired_rows(results)]
    if not rows:
        raise PlotInputError("no host vs plugin comparison to plot")
    names = [f"{r['plugin']}\n{r['protocol']}" + (f"\n{label}" if len(evals) > 1 else "")
             for label, r in rows]
    x = np.arange(len(rows))
    fig = Figure(figsize=(max(7.0, 1.3 * len(rows) + 4), 4.5), layout="constrained")
    bars, diffs = fig.subplots(1, 2, width_ratios=[3, 2])
    bars.bar(x - 0.2, [r["host_miou"] for _, r in rows], 0.4, label="host", color="#8c8c8c")
    bars.bar(x + 0.2, [r["plugin_miou"] for _, r in rows], 0.4, label="plugin", color="#1f77b4")
    bars.set(xticks=x, ylabel="mIoU (%)", title="host vs plugin", ylim=(0, 100))
    bars.set_xticklabels(names, fontsize=8)
    bars.legend(fontsize=8)
    d = np.array([r["diff"] for _, r in rows])
    err = np.array([[r["diff"] - r["lo"] for _, r in rows], [r["hi"] - r["diff"] for _, r in rows]])
    diffs.errorbar(x, d, yerr=err, fmt="o", color="#d62728", capsize=4)
    diffs.axhline(0, color="black", linewidth=0.8)
    diffs.set(xticks=x, ylabel="Δ mIoU, plugin − host (points)",
              title="plugin − host, paired 95% CI")
    diffs.set_xticklabels(names, fontsize=8)
    for ax in (bars, diffs):
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, out)


def example_masks(examples: list[dict], out: str | Path, title: str = "") -> Path:
    """One row per example {"image", "gt", "prompt" (a TrainPrompt), "masks": {engine:
    mask}, "iou": {engine: %}}: the image with its truth, then each engine's mask on the
    same prompt, cropped around the object."""
    if not examples:
        raise PlotInputError("no examples to draw")
    cols = 1 + len(examples[0]["masks"])
    fig = Figure(figsize=(3 * cols, 3 * len(examples)), layout="constrained")
    axes = np.asarray(fig.subplots(len(examples), cols, squeeze=False))
    for row, ex in zip(axes, examples):
        crop = _crop(ex["gt"], ex["prompt"])
        panels = [("truth", ex["gt"], "#2ca02c")] + [
            (f"{name}  IoU {ex['iou'][name]:.1f}", mask, "#e6007e") for name, mask in ex["masks"].items()]
        for ax, (label, mask, colour) in zip(row, panels):
            _overlay(ax, ex["image"], mask, colour, crop)
            if label != "truth":   # the truth's outline over each answer, to compare by eye
                x0, y0, x1, y1 = crop
                ax.contour(np.asarray(ex["gt"], float)[y0:y1, x0:x1], levels=[0.5],
                           colors="white", linewidths=0.9)
            _draw_prompt(ax, ex["prompt"], crop)
            ax.set_title(label, fontsize=9)
            ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, out)


# -------------------------------------------------------------------- helpers
_STYLES = ["o-", "s--", "^:", "d-."]


def _is_miou(metric: str) -> bool:
    """mIoU per protocol only: with mBIoU and the rest the legend outgrows the plot."""
    return metric == "miou" or metric.endswith("/miou")


def _colours(n: int) -> list:
    from matplotlib import colormaps
    return [colormaps["tab10"](i % 10) for i in range(n)]


def _running_mean(values: np.ndarray, window: int | None = None) -> np.ndarray:
    window = window or max(1, len(values) // 20)
    c = np.cumsum(np.insert(values.astype(float), 0, 0.0))
    lo = np.maximum(np.arange(1, len(values) + 1) - window, 0)
    return (c[1:] - c[lo]) / (np.arange(1, len(values) + 1) - lo)


def _crop(gt: np.ndarray, prompt) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 around the object and its prompt, with a margin."""
    h, w = gt.shape
    ys, xs = np.nonzero(gt)
    pts = [np.stack([xs, ys], 1)] if xs.size else [np.array([[0, 0], [w - 1, h - 1]])]
    if prompt.box is not None:
        pts.append(np.asarray(prompt.box, float).reshape(2, 2))
    if prompt.points is not None:
        pts.append(np.asarray(prompt.points, float).reshape(-1, 2))
    allp = np.concatenate(pts)
    (x0, y0), (x1, y1) = allp.min(0), allp.max(0)
    m = 0.25 * max(x1 - x0, y1 - y0, 16)
    return (int(max(0, x0 - m)), int(max(0, y0 - m)), int(min(w, x1 + m + 1)), int(min(h, y1 + m + 1)))


def _overlay(ax, image: np.ndarray, mask: np.ndarray, colour: str, crop) -> None:
    from matplotlib.colors import to_rgb
    x0, y0, x1, y1 = crop
    # the scene dimmed to grey, so a colour mask stands out on the colourful synthetic images
    grey = image[y0:y1, x0:x1].astype(float).mean(-1, keepdims=True) / 255
    rgb = np.repeat(0.25 + 0.5 * grey, 3, axis=-1)
    m = np.asarray(mask, bool)[y0:y1, x0:x1]
    rgb[m] = 0.35 * rgb[m] + 0.65 * np.array(to_rgb(colour))
    ax.imshow(rgb, interpolation="nearest")


def _draw_prompt(ax, prompt, crop) -> None:
    x0, y0 = crop[:2]
    if prompt.box is not None:
        bx0, by0, bx1, by1 = np.asarray(prompt.box, float)
        ax.plot([bx0 - x0, bx1 - x0, bx1 - x0, bx0 - x0, bx0 - x0],
                [by0 - y0, by0 - y0, by1 - y0, by1 - y0, by0 - y0], color="#ffbf00", linewidth=1.5)
    if prompt.points is not None:
        pts = np.asarray(prompt.points, float).reshape(-1, 2)
        labels = np.ones(len(pts)) if prompt.labels is None else np.asarray(prompt.labels)
        for (px, py), label in zip(pts, labels):
            ax.plot(px - x0, py - y0, "*" if label else "x", color="#ffbf00" if label else "red",
                    markersize=11, markeredgecolor="black")


def _save(fig: Figure, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, dpi=110)
    return out
