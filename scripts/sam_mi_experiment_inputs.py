"""Inputs of the SAM-MI experiment (docs/experiments.md): a random-weight small open_clip
CLIP (ViT width 64, patch 16, 192 px, 4 blocks; the real tokenizer), the SAM-MI config
sized to it, and the COCO file with the unseen categories' annotations removed (every
image kept, so the group split is the full file's).

    python scripts/sam_mi_experiment_inputs.py synth/instances.json OUT --unseen blob,cup
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CONFIG = {"clip_size": 192, "patch": 16, "clip_width": 64, "embed_dim": 64, "taps": [1, 2],
          "hidden": 32, "layers": 1, "heads": 2, "window": 6, "pooling": 2, "pad_len": 8,
          "text_proj": 32, "appearance_proj": 32, "decoder_dims": [32, 16],
          "guidance_dims": [32, 32], "guidance_proj": [16, 8], "grid": 16, "tspp_hidden": 32,
          "dmi_heads": 4}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("coco", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--unseen", default="blob,cup", help="category names left out of training")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        data = json.loads(args.coco.read_text())
        names = {c["name"]: c["id"] for c in data["categories"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"sam_mi_experiment_inputs: error: {args.coco}: not a COCO file ({exc})", file=sys.stderr)
        return 2
    unseen = [n.strip() for n in args.unseen.split(",") if n.strip()]
    missing = [n for n in unseen if n not in names]
    if missing:
        print(f"sam_mi_experiment_inputs: error: {args.coco} has no category {', '.join(missing)}",
              file=sys.stderr)
        return 2
    import torch

    from engines.sam_mi import SamMiConfig, tiny_clip
    SamMiConfig.from_dict(CONFIG).check()
    args.out.mkdir(parents=True, exist_ok=True)
    clip = tiny_clip(seed=args.seed, width=64, patch=16, image_size=192, layers=4, embed_dim=64)
    torch.save(clip.state_dict(), args.out / "clip_small_random.pt")
    (args.out / "config.json").write_text(json.dumps(CONFIG))
    drop = {names[n] for n in unseen}
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] not in drop]
    data["categories"] = [c for c in data["categories"] if c["id"] not in drop]
    seen = args.out / f"seen{len(data['categories'])}.json"
    seen.write_text(json.dumps(data))
    print(f"wrote {args.out / 'clip_small_random.pt'} "
          f"({sum(p.numel() for p in clip.parameters()):,} parameters), config.json, {seen.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
