"""Evaluation protocols on any COCO-format dataset, through the engines themselves.

What is measured is what the tool does: the engine embeds the original image and
answers a `Prompt` in original pixels; masks are compared with the ground truth at the
original resolution. Protocols (Stable-SAM §5, HQ-SAM §5): a tight box (deterministic,
one prompt), a noisy box at scale 0.4, and 1/3/5/10 random positive points, with
`n_prompts` random prompts per instance (20 in the papers). Every engine compared in one
run sees exactly the same prompts (seeded by instance and draw). Metrics: mIoU, boundary
IoU (dilation 0.02 of the diagonal) and the stability ST over an instance's masks.
Each object's scores are kept too (`per_object`, in the same order for every engine), so
that training/paired.py can put a paired bootstrap interval on plugin − host.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from engines.types import Engine, Prompt

from .metrics import boundary_iou, mask_iou, stability
from .prompts import make_prompt


@dataclass(frozen=True)
class Protocol:
    name: str
    kind: str                  # training.prompts kind
    options: tuple = ()        # (key, value) pairs for make_prompt
    deterministic: bool = False


PROTOCOLS = {p.name: p for p in (
    Protocol("tight-box", "tight-box", deterministic=True),
    Protocol("noisy-box", "noisy-box", (("scale", 0.4),)),
    Protocol("1-point", "points-1"),
    Protocol("3-point", "points-3"),
    Protocol("5-point", "points-5"),
    Protocol("10-point", "points-10"),
    Protocol("center-point", "center-point", deterministic=True),
)}


def parse_protocols(text: str) -> list[Protocol]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in PROTOCOLS]
    if unknown or not names:
        raise ValueError(f"unknown protocol(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(PROTOCOLS)}")
    return [PROTOCOLS[n] for n in names]


def to_prompt(train_prompt, multimask: bool) -> Prompt:
    return Prompt(points=train_prompt.points, labels=train_prompt.labels, box=train_prompt.box,
                  multimask=multimask)


def evaluate_engines(engines: dict[str, Engine], items, protocols: list[Protocol],
                     n_prompts: int = 20, seed: int = 0, multimask: bool = False,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, dict[str, dict]]:
    """{engine name: {protocol: {"miou", "mbiou", "st", "n", "per_object"}}} over `items`
    (TrainItems in original pixels), in % (ST is NaN for a deterministic protocol).
    "per_object" is one {"object", "miou", "mbiou", "st"} per object (ST None where it is
    undefined), in the same order for every engine. `multimask=False` asks for the
    single-mask output, as the papers' protocols do; with True the engine's best-scored
    candidate is used."""
    by_image: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        by_image.setdefault(item.image_key, []).append(index)
    per = {name: {p.name: [] for p in protocols} for name in engines}
    done = 0
    for indices in by_image.values():
        image = items[indices[0]].load_image()
        embeddings = {name: engine.embed(image) for name, engine in engines.items()}
        for index in indices:
            gt = items[index].load_mask()
            for p_index, protocol in enumerate(protocols):
                prompts = protocol_prompts(protocol, gt, seed, index, p_index, n_prompts)
                for name, engine in engines.items():
                    masks = [engine.predict(embeddings[name], to_prompt(tp, multimask)).masks[0]
                             for tp in prompts]
                    per[name][protocol.name].append({
                        "object": items[index].name or str(index),
                        "miou": 100 * float(np.mean([mask_iou(m, gt) for m in masks])),
                        "mbiou": 100 * float(np.mean([boundary_iou(m, gt) for m in masks])),
                        "st": 100 * float(stability(np.stack(masks))) if len(masks) > 1 else None})
            done += 1
            if progress:
                progress(done, len(items))
    return {name: {proto: _summary(rows) for proto, rows in by_proto.items()}
            for name, by_proto in per.items()}


def protocol_prompts(protocol: Protocol, gt: np.ndarray, seed: int, index: int, p_index: int,
                     n_prompts: int) -> list:
    """The training prompts object `index` gets under the `p_index`-th protocol of a run:
    the same for every engine, and for training/plots.py's example figures."""
    draws = 1 if protocol.deterministic else n_prompts
    return [make_prompt(protocol.kind, gt, np.random.default_rng([seed, index, p_index, r]),
                        **dict(protocol.options)) for r in range(draws)]


def _summary(rows: list[dict]) -> dict:
    def mean(key: str) -> float:
        values = [r[key] for r in rows if r[key] is not None]
        return float(np.mean(values)) if values else float("nan")
    return {"miou": mean("miou"), "mbiou": mean("mbiou"), "st": mean("st"), "n": len(rows),
            "per_object": rows}


def format_table(results: dict[str, dict[str, dict]]) -> str:
    """Markdown: one row per protocol, mIoU / mBIoU / ST per engine side by side (in %)."""
    names = list(results)
    protocols = list(next(iter(results.values()))) if results else []
    head = "| protocol | " + " | ".join(f"{n} mIoU / mBIoU / ST" for n in names) + " |"
    rule = "|---|" + "---|" * len(names)
    rows = []
    for proto in protocols:
        cells = []
        for n in names:
            r = results[n][proto]
            st = "-" if np.isnan(r["st"]) else f"{r['st']:.1f}"
            cells.append(f"{r['miou']:.1f} / {r['mbiou']:.1f} / {st}")
        rows.append(f"| {proto} | " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *rows])
