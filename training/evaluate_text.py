"""`annotator eval sam-mi`: typed-class segmentation scored two ways over a dataset.

Each image is asked once per pipeline with the dataset's whole vocabulary (its category
names, plus `background` when given). Semantic: the engine's argmax map
(`extras["semantic"]`) against the label map from the instance masks (training/semantic.py:
255 where unlabelled or where two classes clash), one confusion matrix over the dataset
-> mIoU (detectron2's SemSegEvaluator). Instances: every proposal with a class is a
detection (its score, its mask) against the annotated instances -> COCO mask AP
(pycocotools, "segm"). Pipelines share embeddings where they share an engine (the
dense-grid baseline runs on the same embedding as the TSPP pipeline), and the times
reported are per image: `embed_s` (SAM + CLIP encoders) and `propose_s` (everything
after the embeddings).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .semantic import semantic_items, vocabulary_of
from .text_metrics import Confusion, mask_ap


def evaluate_text(pipelines: Mapping[str, tuple[Any, dict]], items: Sequence, *,
                  background: str | None = None, vocabulary: Sequence[str] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, dict[str, float]]:
    """{pipeline: {"miou", "pixel_acc", "ap", "ap50", "ap75", "points", "decoder_passes",
    "embed_s", "propose_s", "images"}}; `pipelines`: name -> (engine, request options)."""
    vocab = list(vocabulary) if vocabulary is not None else vocabulary_of(items, background)
    images = semantic_items(items, vocab, background)
    k = len(vocab)
    conf = {name: Confusion(k) for name in pipelines}
    dets: dict[str, list[dict]] = {name: [] for name in pipelines}
    stats = {name: {"points": [], "decoder_passes": [], "embed_s": [], "propose_s": []} for name in pipelines}
    truth, sizes = [], {}
    for image_id, item in enumerate(images, start=1):
        image = item.load_image()
        labels = item.labels()
        sizes[image_id] = tuple(item.image_size)
        truth += [{"image_id": image_id, "category": inst.category, "mask": inst.load_mask()}
                  for inst in item.instances]
        embeddings: dict[int, tuple[Any, float]] = {}
        for name, (engine, options) in pipelines.items():
            if id(engine) not in embeddings:
                t0 = time.perf_counter()
                embeddings[id(engine)] = (engine.embed(image), time.perf_counter() - t0)
            emb, embed_s = embeddings[id(engine)]
            t0 = time.perf_counter()
            props = engine.propose(emb, {**options, "classes": vocab})
            stats[name]["propose_s"].append(time.perf_counter() - t0)
            stats[name]["embed_s"].append(embed_s)
            if list(props.classes) != vocab:
                raise ValueError(f"{name}: the engine answered for {list(props.classes)}, not the "
                                 f"vocabulary {vocab} (duplicate or blank category names?)")
            conf[name].add(props.extras["semantic"], labels)
            stats[name]["points"].append(len(props.extras.get("points", ())))
            stats[name]["decoder_passes"].append(props.extras.get("decoder_passes", 0))
            dets[name] += [{"image_id": image_id, "category": c, "mask": props.masks[i],
                            "score": float(props.scores[i])}
                           for i, c in enumerate(props.class_names or ()) if c is not None]
        if progress:
            progress(image_id, len(images))
    instance_vocab = [n for n in vocab if n != background]
    out = {}
    for name in pipelines:
        scores = conf[name].scores()
        ap = mask_ap(truth, dets[name], instance_vocab, sizes)
        out[name] = {"miou": scores["miou"], "pixel_acc": scores["pixel_acc"],
                     "per_class_iou": dict(zip(vocab, scores["per_class_iou"])), **ap,
                     **{key: float(np.mean(v)) if v else float("nan") for key, v in stats[name].items()},
                     "images": len(images)}
    return out


def format_text_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown: one row per pipeline (mIoU, AP in %; points, passes, seconds per image)."""
    head = ("| pipeline | mIoU | pixel acc | mask AP | AP50 | SAM points | decoder passes "
            "| embed s | propose s |")
    rule = "|---|" + "---:|" * 8
    rows = [f"| {name} | {100 * r['miou']:.1f} | {100 * r['pixel_acc']:.1f} | {100 * r['ap']:.1f} "
            f"| {100 * r['ap50']:.1f} | {r['points']:.0f} | {r['decoder_passes']:.1f} "
            f"| {r['embed_s']:.3f} | {r['propose_s']:.3f} |" for name, r in results.items()]
    return "\n".join([head, rule, *rows])
