"""`annotator segment IMAGE --point X,Y[,LABEL] --box X0,Y0,X1,Y1 --out MASK.png`:
one prompt, one mask, printed with the engine that answered."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def _floats(text: str, n: tuple[int, ...], what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} {text!r}: expected comma-separated numbers") from None
    if len(values) not in n:
        raise argparse.ArgumentTypeError(f"{what} {text!r}: expected {' or '.join(map(str, n))} numbers")
    return values


def point_arg(text: str) -> list[float]:
    return _floats(text, (2, 3), "point")


def box_arg(text: str) -> list[float]:
    return _floats(text, (4,), "box")


def register(subparsers) -> None:
    p = subparsers.add_parser("segment", help="segment one object in an image from a prompt",
                              description=__doc__)
    p.add_argument("image", type=Path)
    p.add_argument("--point", type=point_arg, action="append", default=[], metavar="X,Y[,LABEL]",
                   help="click in image pixels; LABEL 1 = object (default), 0 = background; repeatable")
    p.add_argument("--box", type=box_arg, metavar="X0,Y0,X1,Y1", help="box in image pixels")
    p.add_argument("--engine", help="force an engine (default: the router's choice)")
    p.add_argument("--checkpoint", type=Path, help="checkpoint file for --engine")
    p.add_argument("--fine-edges", action="store_true", help="prefer the boundary engine (hq-sam)")
    p.add_argument("--models-dir", help="models folder (default: $ANNOTATOR_MODELS_DIR or the user data dir)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available)")
    p.add_argument("--out", type=Path, default=Path("mask.png"), help="mask PNG to write (0/255)")
    p.add_argument("--overlay", type=Path, help="also write the image with the mask drawn on it")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    p.set_defaults(func=run)


def run(args) -> int:
    from annotator.core.engine_image import load_engine_copy
    from annotator.core.images import load_image
    from annotator.core.masks_io import save_mask_png, save_overlay_png
    from engines.router import Router
    from engines.types import Prompt

    if args.checkpoint and not args.engine:
        raise SystemExit("annotator segment: error: --checkpoint needs --engine (sam, sam2, ...)")
    copy = load_engine_copy(args.image)   # engines need only a reduced copy
    points = np.array([p[:2] for p in args.point], dtype=np.float32).reshape(-1, 2)
    labels = np.array([int(p[2]) if len(p) == 3 else 1 for p in args.point], dtype=np.int32)
    prompt = Prompt(points=points if len(points) else None, labels=labels if len(points) else None,
                    box=None if args.box is None else np.array(args.box, dtype=np.float32))
    router = Router(models_dir=args.models_dir, device=args.device,
                    checkpoints={args.engine: args.checkpoint} if args.checkpoint else None)
    routed = router.route("box" if args.box is not None else "points",
                          fine_edges=args.fine_edges, engine=args.engine)
    engine = routed.engine
    t0 = time.perf_counter()
    emb, source = _embed(engine, copy, use_cache=not args.no_cache)
    del copy
    t1 = time.perf_counter()
    pred = engine.predict(emb, prompt)
    t2 = time.perf_counter()
    mask = pred.masks[0]
    save_mask_png(mask, args.out)
    if args.overlay:   # the full-size pixels, read only now that the engine's are gone
        save_overlay_png(load_image(args.image), mask, args.overlay)
    print(f"engine: {routed.explain()}")
    print(f"device: {getattr(engine, 'device', 'cpu')}; embedding: {source} in {1000 * (t1 - t0):.0f} ms; "
          f"decode: {1000 * (t2 - t1):.0f} ms")
    print(f"mask: {int(mask.sum())} pixels of {mask.size}, score {float(pred.scores[0]):.3f} -> {args.out}")
    return 0


def _embed(engine, copy, use_cache: bool):
    """Embed the engine's copy through the on-disk cache for model engines (the classic
    engine is cheap); the embedding answers in the full image's pixels."""
    from annotator.core.engine_image import at_full_size, check_copy_is_enough
    from annotator.core.service_prefetch import encoder_input_side
    image = copy.pixels
    check_copy_is_enough(encoder_input_side(engine), image.shape[:2], copy.full_size)
    if not use_cache or not getattr(engine, "input_side", None):
        return at_full_size(engine.embed(image), copy.full_size), "computed"
    from engines.cache import CacheKey, EmbeddingCache, default_cache_dir, image_digest
    cache = EmbeddingCache(memory_mb=0, disk_dir=default_cache_dir())
    key = CacheKey(image_digest(image), engine.backbone_key, engine.input_side)
    emb, source = cache.get_or_compute(key, lambda: engine.embed(image))
    return at_full_size(emb, copy.full_size), source
