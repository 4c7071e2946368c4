"""'Segment everything': our sam-amg / sam2-amg against SamAutomaticMaskGenerator /
SAM2AutomaticMaskGenerator on the same full-size architecture with RANDOM weights
(no weights can be downloaded here), a 32x32 grid on a 1024x768 photo.

Timed: everything after the image embedding (the encoder runs once per process; the
reference's `set_image` is replaced by restoring those features). Each measurement runs
in its own process, whose peak RSS growth over the embedded state (VmHWM after
clear_refs) is the memory column. With random weights almost nothing passes the default
filters, so a second setting (every filter off: IoU 0, stability 0, NMS 1.0) makes the
post-processing do the work real weights would give it.

A second section (bench/promptless.py) times the promptless engines, PMG-SAM and
IP-SAM, end to end and after the embedding against sam2-amg and one plain SAM 2
embedding, with the issues' goals as verdicts (`--promptless-archs`, default hiera_b+;
hiera_l is the paper's IP-SAM size).

    python bench/proposals.py [--archs vit_b hiera_t] [--promptless-archs hiera_b+ hiera_l]
                              [--only amg|promptless] [--grid 32] [--runs 3] [--no-write]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _proc import cpu_header, reset_peak, status_kib  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# the shared data folder beside the checkout (or beside its worktrees' folder)
PHOTO = next((d / "shared" / "data" / "photos" / "cars.jpg" for d in (ROOT, *ROOT.parents)
              if (d / "shared" / "data" / "photos" / "cars.jpg").is_file()),
             ROOT.parent / "shared" / "data" / "photos" / "cars.jpg")
SETTINGS = {"defaults": {}, "filters off": {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0,
                                            "box_nms_thresh": 1.0}}


def photo_1024x768() -> np.ndarray:
    sys.path.insert(0, str(ROOT))
    from annotator.core.images import load_image
    img = load_image(PHOTO)
    h, w = img.shape[:2]
    scale = max(1024 / w, 768 / h)
    import cv2
    img = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    y0, x0 = (img.shape[0] - 768) // 2, (img.shape[1] - 1024) // 2
    return np.ascontiguousarray(img[y0:y0 + 768, x0:x0 + 1024])


def worker(arch: str, impl: str, setting: str) -> dict:
    """One measurement in this process: embed once, then time one generation."""
    import torch
    sys.path.insert(0, str(ROOT))
    from engines.hosts import Sam2Engine, SamEngine, build_sam2_architecture, build_sam_architecture
    from engines.sam_amg import Sam2AmgEngine, SamAmgEngine
    torch.manual_seed(0)
    sam2 = arch.startswith("hiera")
    model = build_sam2_architecture(arch) if sam2 else build_sam_architecture(arch)
    image = photo_1024x768()
    options = {"points_per_side": 32, **SETTINGS[setting]}
    calls = [0]
    decoder = model.sam_mask_decoder if sam2 else model.mask_decoder
    decoder.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    if impl == "reference":
        gen = _reference(model, sam2, image, options)
        run = lambda: gen.generate(image)                          # noqa: E731
    else:
        host = (Sam2Engine if sam2 else SamEngine)(model, backbone_key="bench", device="cpu",
                                                   exact=impl == "ours-exact")
        amg = (Sam2AmgEngine if sam2 else SamAmgEngine)(host)
        emb = amg.embed(image)
        run = lambda: amg.propose(emb, options)                    # noqa: E731
    base = status_kib("VmRSS") / 1024
    reset_peak()
    t0 = time.perf_counter()
    out = run()
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_mib": status_kib("VmHWM") / 1024 - base, "decoder_passes": calls[0],
            "proposals": len(out)}


def _reference(model, sam2: bool, image, options):
    import torch
    if sam2:
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
        gen = SAM2AutomaticMaskGenerator(model, **options)
    else:
        from segment_anything import SamAutomaticMaskGenerator
        gen = SamAutomaticMaskGenerator(model, **options)
    pred = gen.predictor
    with torch.no_grad():
        pred.set_image(image)
    saved = dict(vars(pred))
    pred.set_image = lambda _img: vars(pred).update(saved)     # embed once, as ours
    return gen


def run_all(archs: list[str], runs: int) -> list[dict]:
    rows = []
    for arch in archs:
        for setting in SETTINGS:
            for impl in ("reference", "ours-exact", "ours"):
                samples = []
                for _ in range(runs):
                    cmd = [sys.executable, __file__, "--worker", arch, impl, setting]
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
                    if proc.returncode != 0:
                        raise SystemExit(f"{arch} {impl} {setting} failed:\n{proc.stderr[-2000:]}")
                    samples.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                    print(arch, setting, impl, samples[-1], file=sys.stderr, flush=True)
                rows.append({"arch": arch, "setting": setting, "impl": impl,
                             "seconds": float(np.median([s["seconds"] for s in samples])),
                             "peak_mib": float(np.median([s["peak_mib"] for s in samples])),
                             "decoder_passes": samples[0]["decoder_passes"],
                             "proposals": samples[0]["proposals"], "runs": runs})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["## Proposals: segment everything (`bench/proposals.py`)", "",
             f"{cpu_header()}; torch threads as set by "
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; full-size "
             "architectures with **random weights**; 32x32 grid on a 1024x768 crop of "
             "`cars.jpg`; time after the image embedding, median of "
             f"{rows[0]['runs']} runs, each in its own process; peak = RSS high-water growth "
             "over the embedded state.", "",
             "| arch | filters | implementation | time (s) | vs reference | peak MiB | decoder passes | proposals |",
             "|---|---|---|---|---|---|---|---|"]
    ref = {(r["arch"], r["setting"]): r for r in rows if r["impl"] == "reference"}
    for r in rows:
        base = ref[(r["arch"], r["setting"])]
        lines.append(f"| {r['arch']} | {r['setting']} | {r['impl']} | {r['seconds']:.2f} | "
                     f"{r['seconds'] / base['seconds']:.2f}x | {r['peak_mib']:.0f} | "
                     f"{r['decoder_passes']} | {r['proposals']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import promptless
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(*sys.argv[2:5])))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--promptless-worker":
        print(json.dumps(promptless.worker(*sys.argv[2:6], SETTINGS)))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--promptless-flops":
        print(json.dumps(promptless.flops_worker(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["vit_b", "hiera_t"],
                        help="ours against the reference generators: SAM / SAM 2 sizes")
    parser.add_argument("--promptless-archs", nargs="+", default=[promptless.PMG_ARCH],
                        help="PMG-SAM / IP-SAM against sam2-amg: SAM 2 sizes "
                        f"({', '.join(promptless.ARCHS)}; PMG-SAM rows at {promptless.PMG_ARCH} only)")
    parser.add_argument("--only", choices=("amg", "promptless"),
                        help="run one of the two sections (default: both)")
    parser.add_argument("--grid", type=int, default=32, help="sam2-amg's points per side in "
                        "the promptless section (32: the issues' goals; less only for a smoke run)")
    parser.add_argument("--no-flops", action="store_true",
                        help="skip counting IP-SAM's FLOPs after the embedding")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from _docs import write_section
    if args.only != "promptless":
        text = table(run_all(args.archs, args.runs))
        print(text)
        if not args.no_write:
            write_section(ROOT / "docs" / "benchmarks.md", "proposals", text)
    if args.only != "amg":
        text = promptless.table(promptless.run_all(args.promptless_archs, args.runs,
                                                   flops=not args.no_flops, grid=args.grid))
        print(text)
        if not args.no_write:
            write_section(ROOT / "docs" / "benchmarks.md", "promptless", text)


if __name__ == "__main__":
    main()
