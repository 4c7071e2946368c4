"""How far each encoder runtime's answers are from the exact fp32 path, on full-size
architectures with RANDOM weights (no weights can be downloaded here), on a 1024x768
crop of a real photo: the features' relative error, the click logits' relative error and
the masks' IoU and differing boundary pixels over seeded single clicks. The bounds the
product relies on (engines/runtime/choice.FEATURE_BOUND) are checked against these.

    python bench/runtime_fidelity.py [--archs vit_b hiera_t hq:vit_b] [--clicks 20] [--no-write]

`hq:ARCH` is HQ-SAM on that ViT (its graph also returns the early feature; the features
compared are the embedding, that feature and the HQ feature map made from them).

Each runtime runs in this one process (the fidelity, not the speed, is measured here;
bench/engine_latency.py times them in fresh processes). Random weights make masks
fragile (near-zero logits everywhere), so the mask numbers are a pessimistic bound.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))
from _proc import cpu_header  # noqa: E402
from engine_latency import load_image, make_clicks, pick_image  # noqa: E402

RUNTIMES = ("torch-bf16", "openvino-fp32", "openvino-bf16")


def boundary(mask: np.ndarray) -> np.ndarray:
    import cv2
    m = mask.astype(np.uint8)
    return m != cv2.erode(m, np.ones((3, 3), np.uint8))


def build(arch: str):
    """(random-weight model, engine class, backbone key) for vit_*, hiera_* or hq:vit_*."""
    import torch
    torch.manual_seed(0)
    if arch.startswith("hq:"):
        from engines.hq_sam import HqSamEngine, build_hq_architecture
        return build_hq_architecture(arch[3:]), HqSamEngine, f"hq-sam:{arch[3:]}:random-seed0"
    from engines.hosts import Sam2Engine, SamEngine, build_sam2_architecture, build_sam_architecture
    if arch.startswith("hiera"):
        return build_sam2_architecture(arch), Sam2Engine, f"sam2:{arch}:random-seed0"
    return build_sam_architecture(arch), SamEngine, f"sam:{arch}:random-seed0"


def measure(arch: str, image: np.ndarray, clicks: list, runtimes) -> list[dict]:
    from engines.runtime import encoders
    from engines.types import Prompt
    model, cls, key = build(arch)

    def answers(engine):
        emb = engine.embed(image)
        feats = tuple(emb.features[k] for k in sorted(emb.features))
        preds = [engine.predict(emb, Prompt(points=np.array([xy], np.float32), labels=np.array([1])))
                 for xy in clicks]
        return feats, preds

    ref_feats, ref_preds = answers(cls(model, backbone_key=key, device="cpu", exact=True))
    rows = []
    for runtime in runtimes:
        engine = cls(model, backbone_key=key, device="cpu", runtime=runtime)
        got = engine.encoder.prepare()
        if got != runtime:
            rows.append({"arch": arch, "runtime": runtime, "error": engine.encoder.message})
            continue
        feats, preds = answers(engine)
        logit_err, ious, edge_px = [], [], []
        for a, b in zip(ref_preds, preds):
            la, lb = np.asarray(a.low_res_logits, np.float64), np.asarray(b.low_res_logits, np.float64)
            logit_err.append(float(np.linalg.norm(la - lb) / max(np.linalg.norm(la), 1e-12)))
            ma, mb = a.masks[0], b.masks[0]
            union = np.logical_or(ma, mb).sum()
            ious.append(1.0 if union == 0 else float(np.logical_and(ma, mb).sum() / union))
            edge_px.append(int(np.logical_xor(boundary(ma), boundary(mb)).sum()))
        rows.append({"arch": arch, "runtime": runtime,
                     "feature_error": encoders.relative_error(feats, ref_feats),
                     "logit_error_median": float(np.median(logit_err)), "logit_error_max": max(logit_err),
                     "iou_median": float(np.median(ious)), "iou_min": min(ious),
                     "edge_px_median": float(np.median(edge_px)), "edge_px_max": max(edge_px),
                     "pixels": int(image.shape[0] * image.shape[1]), "clicks": len(clicks)})
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict], image_desc: str) -> str:
    from engines.runtime import FEATURE_BOUND
    lines = ["## Encoder runtimes: fidelity against the exact fp32 path (`bench/runtime_fidelity.py`)", "",
             f"{cpu_header()}. Full-size architectures with **random weights**; image: {image_desc}; "
             f"{rows[0].get('clicks', '?')} seeded single clicks, best mask of each. Feature error = "
             "max over the embedding tensors of ||f - f_exact|| / ||f_exact||; logit error the same "
             "on each click's low-res logits; edge px = pixels on one mask's boundary but not the "
             "other's (1024x768 image). Random weights put most logits near zero, so masks flip "
             "more easily than with trained weights: a pessimistic bound.", "",
             "| arch | runtime | feature error (bound) | logit error median / max | mask IoU median / min "
             "| edge px median / max |", "|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['arch']} | {r['runtime']} | failed: {r['error']} | | | |")
            continue
        bound = FEATURE_BOUND[r["runtime"]]
        ok = "within" if r["feature_error"] <= bound else "**above**"
        lines.append(f"| {r['arch']} | {r['runtime']} | {r['feature_error']:.1e} ({ok} {bound:.0e}) "
                     f"| {r['logit_error_median']:.1e} / {r['logit_error_max']:.1e} "
                     f"| {r['iou_median']:.4f} / {r['iou_min']:.4f} "
                     f"| {r['edge_px_median']:.0f} / {r['edge_px_max']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", nargs="+", default=["vit_b", "hiera_t"],
                   help="vit_b/l/h, hiera_t/s/b+/l, or hq:vit_b (HQ-SAM; hq:vit_tiny too)")
    p.add_argument("--clicks", type=int, default=20)
    p.add_argument("--runtimes", nargs="+", default=list(RUNTIMES))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args()
    image_path, image_desc = pick_image(None)
    image = load_image(image_path)
    clicks = make_clicks(args.clicks)["points"]
    # a fresh runtime folder: conversions are measured, never reused from an older version
    with tempfile.TemporaryDirectory(prefix="runtime-fidelity-") as tmp:
        os.environ["ANNOTATOR_RUNTIME_DIR"] = tmp
        rows = [r for arch in args.archs for r in measure(arch, image, clicks, args.runtimes)]
    text = table(rows, image_desc)
    print(text)
    if not args.no_write:
        from _docs import write_section
        write_section(ROOT / "docs" / "benchmarks.md", "runtime-fidelity", text)


if __name__ == "__main__":
    main()
