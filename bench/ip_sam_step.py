"""Benchmark (not a test): what one IP-SAM training step costs, end to end (LoRA'd encoder
under autograd, no feature cache) against heads only (LoRA rank 0, SAM 2's features read
from the cache), through the real trainer step (inputs, forward, spec §3's loss,
backward, AdamW). Random weights (timing only; no weights exist here).

    .venv/bin/python bench/ip_sam_step.py                      # tiny, then Hiera-T at 1024
    .venv/bin/python bench/ip_sam_step.py --sizes tiny --steps 10

Prints a table (median seconds a step, batch 1); the README's training paragraph quotes it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))


def checkpoint(size: str, folder: Path) -> tuple[Path, dict | None]:
    """A random-weight SAM 2 file and the IpSamConfig fields for it (None: the default)."""
    torch.manual_seed(0)
    if size == "tiny":
        from engines.hosts import tiny_sam2
        from engines.ip_sam import IpSamConfig
        model, config = tiny_sam2(img_size=128), IpSamConfig.tiny().to_dict()
    else:
        from engines.hosts import build_sam2_architecture
        model, config = build_sam2_architecture(size), None
    path = folder / f"sam2-{size}-random.pt"
    torch.save(model.state_dict(), path)
    return path, config


def scenes(n: int, seed: int = 0, h: int = 480, w: int = 640):
    from training.items import items_from_arrays
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    items = []
    for _ in range(n):
        image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        cx, cy, r = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.3, 0.7), h * rng.uniform(0.1, 0.3)
        items += items_from_arrays(image, [(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r])
    return items


def step_seconds(backbone: Path, config: dict | None, heads_only: bool, steps: int,
                 out: Path) -> float:
    from training.trainer import TrainConfig, Trainer, _optimizer
    options = {"heads_only": heads_only, "flip": False, **({"config": config} if config else {})}
    cfg = TrainConfig(engine="ip-sam", backbone=str(backbone), out=str(out), steps=steps + 1,
                      progress=False, device="cpu", cache_dir=str(out / "features"),
                      options=options)
    trainer = Trainer(cfg, items=scenes(2))
    trainer._warm_cache()                  # heads only: every image encoded once, untimed
    params = [p for p in trainer.adapter.trainable.parameters() if p.requires_grad]
    optimizer = _optimizer(trainer.recipe, params)
    times = []
    for step in range(steps + 1):          # the first step (allocations) is not counted
        t0 = time.perf_counter()
        trainer._train_step(trainer.adapter, optimizer, params, step, trainer._global_batch(step))
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,hiera_t", help="tiny and/or SAM 2 archs")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for size in args.sizes.split(","):
            backbone, config = checkpoint(size, tmp)
            steps = args.steps if size != "tiny" else max(args.steps, 10)
            e2e = step_seconds(backbone, config, False, steps, tmp / f"{size}-e2e")
            heads = step_seconds(backbone, config, True, steps, tmp / f"{size}-heads")
            rows.append((size, e2e, heads))
            print(f"{size}: end to end {e2e:.3f} s, heads only {heads:.3f} s", flush=True)
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, batch 1, random weights")
    print("| SAM 2 | input | end to end s/step | heads only s/step | ratio |")
    print("|---|---|---|---|---|")
    for size, e2e, heads in rows:
        side = 128 if size == "tiny" else 1024
        print(f"| {size} | {side} px | {e2e:.3f} | {heads:.3f} | {e2e / heads:.1f}x |")


if __name__ == "__main__":
    main()
