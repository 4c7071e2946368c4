"""One architecture's plugin click latency for bench/engine_latency.py, in a fresh process.

    python bench/_plugin_worker.py --arch vit_b|hiera_t --clicks 30 --image img.npy

Builds the host engine (SAM / SAM 2, random weights, seed 0) and the plugin engines on
it: Stable-SAM (its plugin module at its own initialisation: the work per click does not
depend on the values) and HQ-SAM (on ViT-B the official HQ architecture, random; on
Hiera-T HQ-SAM 2's HQ parts on the same SAM 2). Each
embeds the image once; then clicks alternate host, plugin, host, plugin ... on the same
points and boxes, so a busy moment hits both sides alike. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def engines_for(arch: str) -> dict:
    import torch

    from engines.stable_sam import StableSAMPlugin
    from engines.stable_sam import StableSamEngine
    torch.manual_seed(0)
    if arch.startswith("vit"):
        from engines.hosts import SamEngine, build_sam_architecture
        host = SamEngine(build_sam_architecture(arch), backbone_key=f"sam:{arch}:random")
    else:
        from engines.hosts import Sam2Engine, build_sam2_architecture
        host = Sam2Engine(build_sam2_architecture(arch), backbone_key=f"sam2:{arch}:random")
    width = int(host.model.sam_mask_decoder.transformer_dim if hasattr(host.model, "sam_mask_decoder")
                else host.model.mask_decoder.transformer_dim)
    out = {"host": host, "stable-sam": StableSamEngine(host, StableSAMPlugin(width))}
    torch.manual_seed(0)
    if arch.startswith("vit"):
        from engines.hq_sam import HqSamEngine, build_hq_architecture
        out["hq-sam"] = HqSamEngine(build_hq_architecture(arch), backbone_key=f"hq-sam:{arch}:random")
    else:   # HQ-SAM 2: the HQ parts on a second copy of the same random SAM 2
        from engines.hq_sam import HqSam2Decoder, HqSam2Engine
        model = build_sam2_architecture(arch)
        model.load_state_dict(host.model.state_dict())
        out["hq-sam"] = HqSam2Engine(model, HqSam2Decoder(model.sam_mask_decoder),
                                     backbone_key=f"hq-sam:{arch}:random")
    return out


def prompts(n: int, h: int, w: int, seed: int = 0):
    from engines.types import Prompt
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x, y = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        bw, bh = rng.uniform(0.1, 0.3) * w, rng.uniform(0.1, 0.3) * h
        out.append(("point", Prompt(points=np.array([[x, y]]), labels=np.array([1]))))
        out.append(("box", Prompt(box=np.array([x - bw, y - bh, x + bw, y + bh]))))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", required=True)
    p.add_argument("--clicks", type=int, default=30)
    p.add_argument("--image", type=Path, required=True)
    args = p.parse_args()
    from engines.runtime import tune_allocator
    tune_allocator()
    image = np.load(args.image)
    engines = engines_for(args.arch)
    embeddings = {name: engine.embed(image) for name, engine in engines.items()}
    plan = prompts(args.clicks, *image.shape[:2])
    for name, engine in engines.items():   # warm-up
        engine.predict(embeddings[name], plan[0][1])
    times: dict[str, dict[str, list[float]]] = {n: {"point": [], "box": []} for n in engines}
    for kind, prompt in plan:
        for name, engine in engines.items():
            t0 = time.perf_counter()
            engine.predict(embeddings[name], prompt)
            times[name][kind].append(time.perf_counter() - t0)
    print(json.dumps({"arch": args.arch, "times": times}))


if __name__ == "__main__":
    main()
