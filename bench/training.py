"""Benchmark (not a test): training steps per second with the frozen-feature cache versus
re-running the frozen encoder every step, on full-size architectures with random
weights (timing only; no weights exist here).

For each (plugin, backbone) pair: build the real adapter on a random-weight checkpoint
of the official architecture, make a few images with object masks, then time optimiser
steps (a) with features cached (the encoder ran once per image before timing) and (b)
with a cache that never hits, so every step encodes its batch. Same batches, prompts and
loss in both; only where the features come from differs.

    .venv/bin/python bench/training.py                 # vit_b + hiera_t, ~10 min on 2 cores
    .venv/bin/python bench/training.py --archs hiera_t --cached-steps 5 --recompute-steps 1

Writes its table between the training markers of docs/benchmarks.md (--no-write: don't).
"""
from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
# Python puts this script's folder first on sys.path, where `training` would be this very
# file: the repository's package must win; bench's helpers come after it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))
sys.path.append(str(HERE))
from _docs import write_section  # noqa: E402
from _latency_report import machine  # noqa: E402



def plugin_engines(arch: str) -> list[str]:
    """The click plugins that sit on this arch's host and train on its cached features
    (the Auto plugins differ: pmg-sam has frozen backbones of its own, ip-sam's LoRA'd
    encoder runs under autograd, timed by bench/ip_sam_step.py), in the opposite order
    on the second arch (drift evens out)."""
    from engines import manifest
    family = "sam" if arch.startswith("vit") else "sam2"
    names = [info.name for info in manifest.list_engines(trainable=True)
             if family in info.plugin_hosts and "auto" not in info.tasks]
    return names if arch == "vit_b" else names[::-1]


def random_checkpoint(arch: str, folder: Path) -> Path:
    """The official architecture with random weights, saved as a plain state dict."""
    torch.manual_seed(0)
    if arch.startswith("vit"):
        from engines.hosts import build_sam_architecture
        model = build_sam_architecture(arch)
    else:
        from engines.hosts import build_sam2_architecture
        model = build_sam2_architecture(arch)
    path = folder / f"{arch}-random.pt"
    torch.save(model.state_dict(), path)
    return path


def photo_items(n_images: int | None = None, size: int = 640):
    """Real photos (shared/data/photos, then the bundled samples) with two elliptic object
    masks each: all of them by default, so that, as in a real dataset, a batch's objects
    mostly come from different images (15 images: ~3.8 distinct in a batch of 4)."""
    import cv2

    from annotator.core.images import load_image
    from training.items import items_from_arrays
    folders = (ROOT.parent / "shared" / "data" / "photos", ROOT / "resources" / "samples")
    photos = [p for folder in folders if folder.is_dir()
              for p in sorted(folder.iterdir()) if p.suffix.lower() in (".jpg", ".png")]
    rng = np.random.default_rng(0)
    items = []
    for path in photos[:n_images]:
        image = load_image(path)
        image = cv2.resize(image, (size, size * image.shape[0] // image.shape[1]))
        h, w = image.shape[:2]
        yy, xx = np.mgrid[:h, :w]
        masks = []
        for _ in range(2):
            cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
            ax, ay = rng.uniform(0.1, 0.25) * w, rng.uniform(0.1, 0.25) * h
            masks.append(((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1)
        items += items_from_arrays(image, masks)
    return items


class NeverHit:
    """The no-cache baseline: every step encodes each distinct image of its batch once
    (two objects of one image in a batch share one encoder run, as any trainer would)."""

    def __init__(self, adapter):
        self.adapter = adapter
        self.stats = type("Stats", (), {"encoder_calls": 0})()
        self.this_step: dict[str, dict] = {}

    def new_step(self):
        self.this_step = {}

    def get(self, digest, load):
        if digest not in self.this_step:
            with torch.no_grad():
                feats = self.adapter.encode(self.adapter.preprocess(load())[None])
            self.stats.encoder_calls += 1
            self.this_step[digest] = {k: v[0] for k, v in feats.items()}
        return self.this_step[digest]

    def warm(self, items, progress=None):
        pass


def time_steps(engine: str, backbone: Path, items, steps: int, cached: bool, batch: int,
               out: Path) -> tuple[float, int]:
    from training.trainer import TrainConfig, Trainer
    cfg = TrainConfig(engine=engine, backbone=str(backbone), out=str(out), steps=steps,
                      batch_size=batch, progress=False, checkpoint_every=10**9, device="cpu",
                      cache_dir=str(out / "features"))
    trainer = Trainer(cfg, items=items)
    if not cached:
        source = trainer.features = NeverHit(trainer.adapter)
        batch_inputs = trainer._batch_inputs

        def per_step(step, batch):
            source.new_step()
            return batch_inputs(step, batch)
        trainer._batch_inputs = per_step
    trainer._warm_cache()                 # cached: encode every image once, untimed
    t0 = time.perf_counter()
    trainer.run()                         # run() warms again: all hits, negligible
    seconds = time.perf_counter() - t0
    return steps / seconds, trainer.features.stats.encoder_calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", default="vit_b,hiera_t")
    parser.add_argument("--cached-steps", type=int, default=10)
    parser.add_argument("--recompute-steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--images", type=int, default=None, help="photos to use (default: all)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    from engines.runtime import tune_allocator
    tune_allocator()
    items = photo_items(args.images)
    n_images = len({item.image_key for item in items})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for arch in args.archs.split(","):
            backbone = random_checkpoint(arch, tmp)
            for engine in plugin_engines(arch):
                cached, _ = time_steps(engine, backbone, items, args.cached_steps, True,
                                       args.batch_size, tmp / f"{engine}-{arch}-c")
                fresh, calls = time_steps(engine, backbone, items, args.recompute_steps, False,
                                          args.batch_size, tmp / f"{engine}-{arch}-r")
                rows.append((engine, arch, cached, fresh, calls / args.recompute_steps))
                print(f"{engine} on {arch}: cached {cached:.3f} steps/s, recomputing "
                      f"{fresh:.4f} steps/s ({cached / fresh:.0f}x)", flush=True)
    m = machine()
    lines = [
        "## Training: steps per second with the feature cache",
        "",
        f"`bench/training.py`, {datetime.date.today()}, {m['cpu']}, {m['cores']} cores, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads. Full-size architectures with "
        f"**random weights** (timing only), global batch {args.batch_size} from {len(items)} "
        f"objects on {n_images} photos, at 1024 px input; the same batches, prompts and loss "
        "with and without the cache. Without it, every step encodes each distinct image of its "
        "batch once (images encoded a step: the mean over the recomputing steps). "
        f"{args.cached_steps} cached and {args.recompute_steps} recomputing steps per row.",
        "",
        "| plugin | backbone | cached steps/s | recomputing steps/s | images encoded a step "
        "(recomputing) | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for engine, arch, cached, fresh, per_step in rows:
        lines.append(f"| {engine} | {arch} | {cached:.3f} | {fresh:.4f} | {per_step:.1f} | "
                     f"{cached / fresh:.1f}x |")
    short = [f"{e} on {a}" for e, a, c, f, _ in rows if c / f < 10]   # unrounded
    lines += ["", "Goal: at least 10x with the cache: " +
              ("met." if not short else f"not met for {', '.join(short)}.")]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(ROOT / "docs" / "benchmarks.md", "training", text)


if __name__ == "__main__":
    main()
