"""One side of bench/engine_latency.py for one architecture, in its own fresh process.

    python bench/_latency_worker.py --side reference|ours --arch vit_b --image img.npy \
        --clicks clicks.json --encoder-runs 3 --tmp DIR [--ref-masks DIR/ref.npz]

`reference` is Meta's predictor exactly as its users run it: default environment, default
allocator and threads, `set_image` then `predict(point_coords, point_labels,
multimask_output=True)`. It imports nothing of ours. `ours` runs as the product does:
`tune_allocator()` first, then our engine's `embed` / `predict` and the embedding cache.

Both sides call `torch.manual_seed(0)` right before building the model, so the random
weights are the same (a fingerprint of the parameters is reported to prove it). The result
is one JSON object on stdout; everything else (progress, library chatter) goes to stderr.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

SAM_ARCHS = ("vit_b", "vit_l", "vit_h")
# The reference's own config names (not imported from engines: this side uses nothing of ours).
REF_SAM2_CONFIGS = {
    "hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
CACHE_HIT_RUNS = 10
DISK_HIT_RUNS = 5


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def model_fingerprint(model) -> dict:
    """sha256 over 8 evenly spaced parameter tensors (names + bytes), plus the count."""
    state = model.state_dict()
    names = sorted(state)
    picks = sorted({names[int(i)] for i in np.linspace(0, len(names) - 1, 8)})
    h = hashlib.sha256()
    for name in picks:
        t = state[name].detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(t.numpy().tobytes())
    n_params = sum(p.numel() for p in model.parameters())
    return {"sha256": h.hexdigest()[:16], "tensors": len(picks), "params": int(n_params)}


def torch_info(torch) -> dict:
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads()}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # KiB on Linux


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def point(xy) -> np.ndarray:
    return np.asarray([xy], dtype=np.float64)


# ---------------------------------------------------------------------------- reference


def run_reference(args, image: np.ndarray, clicks: dict) -> dict:
    import torch
    if args.arch in SAM_ARCHS:
        from segment_anything import SamPredictor, sam_model_registry
        torch.manual_seed(0)
        model, build_s = timed(sam_model_registry[args.arch])
        predictor = SamPredictor(model)
        api = "segment_anything.SamPredictor(sam_model_registry[%r]())" % args.arch
    else:
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor
        torch.manual_seed(0)
        model, build_s = timed(build_sam2, REF_SAM2_CONFIGS[args.arch], device="cpu")
        predictor = SAM2ImagePredictor(model)
        api = "sam2.SAM2ImagePredictor(build_sam2(%r, device='cpu'))" % REF_SAM2_CONFIGS[args.arch]
    result = {"side": "reference", "api": api, "build_s": build_s,
              "fingerprint": model_fingerprint(model), **torch_info(torch)}
    log(f"built in {build_s:.1f} s, fingerprint {result['fingerprint']['sha256']}")

    encoder = []
    for i in range(args.encoder_runs):
        _, dt = timed(predictor.set_image, image)
        encoder.append(dt)
        log(f"set_image run {i + 1}: {dt:.2f} s")

    def click(xy):
        return predictor.predict(point_coords=point(xy), point_labels=np.array([1]),
                                 multimask_output=True)

    click(clicks["warmup"])
    times, best = [], []
    for i, xy in enumerate(clicks["points"]):
        (masks, scores, _), dt = timed(click, xy)
        times.append(dt)
        if i < args.compare:
            best.append(np.asarray(masks[int(np.argmax(scores))]) > 0)   # SAM 2 gives float 0/1
    log(f"{len(times)} clicks, median {1000 * float(np.median(times)):.1f} ms")
    if args.save_masks and best:
        np.savez_compressed(args.save_masks, masks=np.stack(best))
    result.update(encoder_s=encoder, click_s=times, mask_shape=list(best[0].shape) if best else None)
    return result


# ---------------------------------------------------------------------------- ours


def build_ours(arch: str, runtime: str = "torch-fp32"):
    import torch
    if arch in SAM_ARCHS:
        from engines.hosts import SamEngine, build_sam_architecture
        torch.manual_seed(0)
        model, build_s = timed(build_sam_architecture, arch)
        fingerprint = model_fingerprint(model)
        return SamEngine(model, backbone_key=f"sam:{arch}:random-seed0", device="cpu",
                         runtime=runtime), build_s, fingerprint
    from engines.hosts import Sam2Engine, build_sam2_architecture
    torch.manual_seed(0)
    model, build_s = timed(build_sam2_architecture, arch)
    fingerprint = model_fingerprint(model)
    return Sam2Engine(model, backbone_key=f"sam2:{arch}:random-seed0", device="cpu",
                      runtime=runtime), build_s, fingerprint


def prepare_runtime(engine) -> dict:
    """Calibrate (if this machine has no record for the architecture) and build the
    runtime; what was picked, how long that took, and the calibration's measurements."""
    slot = engine.encoder
    calibrated = slot.needs_calibration
    _, prepare_s = timed(slot.prepare, progress=log)
    record = slot.store.calibration(slot.arch_key, _facts()) or {}
    how = "calibrated now" if calibrated else \
        "asked for" if slot.store.calibration(slot.arch_key, _facts()) is None or \
        record.get("picked") != slot.runtime else "calibration on record"
    log(f"encoder runtime: {slot.runtime} (prepared in {prepare_s:.1f} s, {how})")
    return {"runtime": slot.runtime, "prepare_s": prepare_s, "calibrated_now": calibrated,
            "calibration": {k: record.get(k) for k in ("seconds", "rel_error", "failed", "when")},
            "runtime_message": slot.message}


def _facts():
    from engines.runtime import machine_facts
    return machine_facts()


def run_ours(args, image: np.ndarray, clicks: dict) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the repo root
    from engines.runtime import tune_allocator
    tuned = tune_allocator()   # first, before torch allocates anything (as the entry points do)
    import torch
    from engines.types import Prompt

    engine, build_s, fingerprint = build_ours(args.arch, args.runtime)
    result = {"side": "ours", "api": f"{type(engine).__name__}.embed / .predict",
              "allocator_tuned": tuned, "build_s": build_s, "fingerprint": fingerprint,
              **torch_info(torch), **prepare_runtime(engine)}
    log(f"built in {build_s:.1f} s, fingerprint {fingerprint['sha256']}, allocator tuned: {tuned}")

    encoder, emb = [], None
    for i in range(args.encoder_runs):
        emb, dt = timed(engine.embed, image)
        encoder.append(dt)
        log(f"embed run {i + 1}: {dt:.2f} s")

    def click(xy):
        return engine.predict(emb, Prompt(points=point(xy), labels=np.array([1])))

    click(clicks["warmup"])
    times, masks = [], []
    for i, xy in enumerate(clicks["points"]):
        pred, dt = timed(click, xy)
        times.append(dt)
        if i < args.compare:
            masks.append(pred.masks[0])
    log(f"{len(times)} clicks, median {1000 * float(np.median(times)):.1f} ms")
    result.update(encoder_s=encoder, click_s=times,
                  agreement=compare_masks(masks, args.ref_masks),
                  cache=time_cache(engine, emb, image, Path(args.tmp), clicks["points"][0]))
    return result


def compare_masks(ours: list[np.ndarray], ref_path: str | None) -> dict:
    """Mismatched pixels of our best mask against the reference's best, click by click."""
    if not ref_path or not Path(ref_path).is_file():
        return {"error": "no reference masks (the reference run failed or was skipped)"}
    ref = np.load(ref_path)["masks"]
    per_click = []
    for mine, theirs in zip(ours, ref):
        if mine.shape != theirs.shape:
            return {"error": f"mask shapes differ: ours {mine.shape}, reference {theirs.shape}"}
        per_click.append(int(np.count_nonzero(mine != theirs)))
    pixels = int(ref[0].size) if len(ref) else 0
    return {"clicks": len(per_click), "mismatched_pixels": per_click, "pixels_per_mask": pixels,
            "max_fraction": max(per_click) / pixels if per_click and pixels else 0.0}


def time_cache(engine, emb, image: np.ndarray, tmp: Path, xy) -> dict:
    """Embedding lookup as the product does it (hash the pixels, build the key, get):
    from memory, and from disk through a new EmbeddingCache on the same folder (a restart)."""
    from engines.files import CacheKey, EmbeddingCache, image_digest
    from engines.types import Prompt

    def never():
        raise RuntimeError("cache miss: the encoder would have run")

    def lookup(cache):
        key = CacheKey(image_digest(image), engine.backbone_key, engine.input_side)
        return cache.get_or_compute(key, never)

    folder = tmp / f"cache-{engine.backbone_key.replace(':', '_').replace('+', 'p')}"
    cache = EmbeddingCache(memory_mb=1024, disk_dir=folder)
    cache.put(CacheKey(image_digest(image), engine.backbone_key, engine.input_side), emb)
    memory = []
    for _ in range(CACHE_HIT_RUNS):
        (_, source), dt = timed(lookup, cache)
        if source != "memory":
            raise RuntimeError(f"expected a memory hit, got {source}")
        memory.append(dt)
    disk, from_disk = [], None
    for _ in range(DISK_HIT_RUNS):
        restarted = EmbeddingCache(memory_mb=1024, disk_dir=folder)
        (from_disk, source), dt = timed(lookup, restarted)
        if source != "disk":
            raise RuntimeError(f"expected a disk hit after a restart, got {source}")
        disk.append(dt)
    # A disk hit must decode exactly like the embedding it was saved from.
    prompt = Prompt(points=point(xy), labels=np.array([1]))
    same = bool(np.array_equal(engine.predict(from_disk, prompt).masks, engine.predict(emb, prompt).masks))
    log(f"cache hit: memory {1000 * float(np.median(memory)):.1f} ms, "
        f"disk {1000 * float(np.median(disk)):.1f} ms, disk decode equal: {same}")
    return {"memory_s": memory, "disk_s": disk, "disk_decode_equal": same,
            "file_mib": sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 2**20}


# ---------------------------------------------------------------------------- main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", choices=("reference", "ours"), required=True)
    p.add_argument("--arch", required=True, choices=SAM_ARCHS + tuple(REF_SAM2_CONFIGS))
    p.add_argument("--image", required=True, help=".npy file, H x W x 3 uint8 RGB")
    p.add_argument("--clicks", required=True, help='JSON {"warmup": [x, y], "points": [[x, y], ...]}')
    p.add_argument("--encoder-runs", type=int, default=3)
    p.add_argument("--compare", type=int, default=5, help="clicks whose masks are compared")
    p.add_argument("--tmp", required=True, help="scratch folder (cache files)")
    p.add_argument("--save-masks", help="reference: write its best masks here (.npz)")
    p.add_argument("--ref-masks", help="ours: the reference's masks to compare against")
    p.add_argument("--runtime", default="torch-fp32",
                   help="ours: the encoder runtime (auto = what the calibration picks on this machine)")
    args = p.parse_args(argv)

    # The result owns stdout; anything printed by libraries goes to stderr instead.
    result_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    image = np.load(args.image)
    clicks = json.loads(Path(args.clicks).read_text())
    run = run_reference if args.side == "reference" else run_ours
    result = run(args, image, clicks)
    result.update(arch=args.arch, peak_rss_mib=peak_rss_mib(), image_shape=list(image.shape))
    os.write(result_fd, (json.dumps(result) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
