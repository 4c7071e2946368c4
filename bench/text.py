"""Typed class names -> instances (sam-mi): TSPP's sparse points against the dense 32x32
grid on the same backbones, full-size CLIP ViT-B/16 (open_clip, 384 px) with a SAM ViT-B
or SAM 2.1 Hiera-T host, all with RANDOM weights (none can be downloaded here), K = 3, 10
and 50 class names on a 1024x768 crop of cars.jpg (cropped as bench/proposals.py does).

Two modes: "trained" (random heads; the TSPP's point head is biased so that p̂ sums to
41 points, the paper's A-150 average, Table 6: random heads would otherwise ask for
about half the grid) and "training-free" (points from Eqs. 3-5 on CLIP's coarse class
masks). Each worker process embeds the photo once (SAM + CLIP: `embed` s), answers the K
names (`first` = embed + propose), then an edited list on the same embedding (one name
replaced: `second`, only the new name is encoded), then the dense-grid pipeline
(prompter="grid": SAM on all 1,024 points, the same SMAgg and class assignment) on the
same embedding. SAM's filters are the AMG defaults ("defaults") or all off ("filters
off": with random weights almost nothing passes the defaults, so this gives the
post-processing the work real weights would).

Goals: TSPP >= 3x faster than the dense grid after the embeddings (paper: 6.3x), and the
second query on the same image <= 0.2x the first (the embeddings are made once).

    OMP_NUM_THREADS=2 python bench/text.py [--archs vit_b hiera_t] [--ks 3 10 50]
                                           [--settings defaults "filters off"] [--runs 3] [--no-write]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import proposals  # noqa: E402
from _proc import cpu_header  # noqa: E402

SETTINGS = {"defaults": {}, "filters off": {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0,
                                            "box_nms_thresh": 1.0}}
MODES = ("trained", "training-free")
TSPP_POINTS = 41          # paper Table 6 (A-150): the average number of TSPP points
NAMES = ("person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
         "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
         "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
         "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
         "kite", "baseball bat", "skateboard", "surfboard", "tennis racket", "bottle",
         "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
         "orange", "broccoli", "road", "sky", "tree", "building")


def photo_1024x768() -> np.ndarray:
    """bench/proposals.py's crop of cars.jpg, from the shared folder beside the checkout or
    inside it (a git worktree sits one level deeper than the main checkout)."""
    for shared in (ROOT.parent / "shared", ROOT / "shared", ROOT.parent.parent / "shared"):
        if (shared / "data" / "photos" / proposals.PHOTO.name).is_file():
            proposals.PHOTO = shared / "data" / "photos" / proposals.PHOTO.name
            break
    return proposals.photo_1024x768()


def _engine(arch: str, mode: str):
    import open_clip
    import torch
    sys.path.insert(0, str(ROOT))
    from engines.hosts import Sam2Engine, SamEngine, build_sam2_architecture, build_sam_architecture
    from engines.sam_mi import SamMiConfig, SamMiEngine, SamMiHeads
    torch.manual_seed(0)
    sam2 = arch.startswith("hiera")
    model = build_sam2_architecture(arch) if sam2 else build_sam_architecture(arch)
    host = (Sam2Engine if sam2 else SamEngine)(model, backbone_key=f"bench:{arch}", device="cpu")
    clip = open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True).eval()
    cfg = SamMiConfig()
    heads = None
    if mode == "trained":
        part = SamMiHeads(cfg)
        with torch.no_grad():       # sigmoid(bias) = 41 / 1024: p̂ sums to about 41
            part.tspp.head_p.bias.fill_(math.log(TSPP_POINTS / (cfg.grid ** 2 - TSPP_POINTS)))
        heads = part.state_dict()
    return SamMiEngine(host, clip, cfg, clip_key="bench-random", heads_state=heads, device="cpu")


def worker(arch: str, mode: str, k: int, setting: str) -> dict:
    engine = _engine(arch, mode)
    image = photo_1024x768()
    names = list(NAMES[:k])
    edited = names[:-1] + [NAMES[-1] if k < len(NAMES) else "lamp post"]
    options = SETTINGS[setting]
    t0 = time.perf_counter()
    emb = engine.embed(image)
    embed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    first = engine.propose(emb, {**options, "classes": names})
    propose_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine.propose(emb, {**options, "classes": edited})
    second_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    grid = engine.propose(emb, {**options, "classes": names, "prompter": "grid"})
    grid_s = time.perf_counter() - t0
    return {"embed_s": embed_s, "propose_s": propose_s, "first_s": embed_s + propose_s,
            "second_s": second_s, "grid_s": grid_s,
            "points": len(first.extras["points"]), "passes": first.extras["decoder_passes"],
            "grid_points": len(grid.extras["points"]), "grid_passes": grid.extras["decoder_passes"],
            "instances": len(first), "grid_instances": len(grid)}


def run_all(archs, modes, ks, settings, runs: int) -> list[dict]:
    rows = []
    for arch in archs:
        for mode in modes:
            for setting in settings:
                for k in ks:
                    samples = []
                    for _ in range(runs):
                        cmd = [sys.executable, __file__, "--worker", arch, mode, str(k), setting]
                        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600,
                                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
                        if proc.returncode != 0:
                            raise SystemExit(f"{arch} {mode} K={k} {setting} failed:\n{proc.stderr[-2000:]}")
                        samples.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                        print(arch, mode, setting, k, samples[-1], file=sys.stderr, flush=True)
                    row = {key: float(np.median([s[key] for s in samples])) for key in samples[0]}
                    rows.append({"arch": arch, "mode": mode, "setting": setting, "k": k, "runs": runs, **row})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["## Text prompts: SAM-MI's sparse points against the dense grid (`bench/text.py`)", "",
             f"{cpu_header()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
             "full-size CLIP ViT-B/16 (384 px) with SAM ViT-B / SAM 2.1 Hiera-T hosts, **random "
             "weights** (the trained mode's TSPP biased to about 41 points, the paper's A-150 "
             "average); a 1024x768 crop of `cars.jpg`; median of "
             f"{rows[0]['runs']} runs, each in its own process. `first` = embeddings (SAM + CLIP) + "
             "the query; `second` = an edited list (one name replaced) on the same embeddings; "
             "`grid` = the dense 32x32-grid pipeline on the same embeddings (same SMAgg and class "
             "assignment). Goals: grid / TSPP >= 3x after the embeddings (paper 6.3x); second / "
             "first <= 0.2.", "",
             "| host | mode | filters | K | embed s | TSPP s | points (passes) | grid s | grid points "
             "(passes) | grid / TSPP | >= 3x | second s | second / first | <= 0.2 |",
             "|---|---|---|---:|---:|---:|---|---:|---|---:|---|---:|---:|---|"]
    for r in rows:
        speed = r["grid_s"] / r["propose_s"]
        ratio = r["second_s"] / r["first_s"]
        lines.append(
            f"| {r['arch']} | {r['mode']} | {r['setting']} | {r['k']} | {r['embed_s']:.2f} | "
            f"{r['propose_s']:.2f} | {r['points']:.0f} ({r['passes']:.0f}) | {r['grid_s']:.2f} | "
            f"{r['grid_points']:.0f} ({r['grid_passes']:.0f}) | {speed:.1f}x | "
            f"{'yes' if speed >= 3 else 'no'} | {r['second_s']:.2f} | {ratio:.2f} | "
            f"{'yes' if ratio <= 0.2 else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        arch, mode, k, setting = sys.argv[2:6]
        print(json.dumps(worker(arch, mode, int(k), setting)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["vit_b", "hiera_t"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--ks", nargs="+", type=int, default=[3, 10, 50])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if any(not 1 <= k < len(NAMES) for k in args.ks):
        parser.error(f"--ks: each K must be between 1 and {len(NAMES) - 1}")
    text = table(run_all(args.archs, args.modes, args.ks, args.settings, args.runs))
    print(text)
    if not args.no_write:
        from _docs import write_section
        write_section(ROOT / "docs" / "benchmarks.md", "text", text)


if __name__ == "__main__":
    main()
