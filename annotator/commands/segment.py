"""`annotator segment IMAGE --point X,Y[,LABEL] --box X0,Y0,X1,Y1 --out MASK.png`:
one prompt, one mask, printed with the engine that answered.

The mask is written in the format its suffix names: .png, .tif/.tiff or .bmp (all
lossless; JPEG and WebP would blur the 0/255 edges and are refused). An engine that
finds nothing (an empty mask) says so, writes nothing and exits with status 1."""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from annotator.core.errors import InputError

# suffix -> Pillow format. Masks must survive a round trip exactly; overlays are pictures.
MASK_FORMATS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}
OVERLAY_FORMATS = {**MASK_FORMATS, ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def _floats(text: str, n: tuple[int, ...], what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} {text!r}: expected comma-separated numbers") from None
    if len(values) not in n:
        raise argparse.ArgumentTypeError(f"{what} {text!r}: expected {' or '.join(map(str, n))} numbers")
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"{what} {text!r}: numbers must be finite")
    return values


def point_arg(text: str) -> list[float]:
    values = _floats(text, (2, 3), "point")
    if len(values) == 3 and values[2] not in (0.0, 1.0):
        # int(0.5) would quietly make it background: a label is exactly 0 or 1
        raise argparse.ArgumentTypeError(f"point {text!r}: LABEL must be 1 (object) or 0 "
                                         f"(background), not {values[2]:g}")
    return values


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
    p.add_argument("--runtime", help="CPU encoder runtime: auto (default: the calibrated one), exact, "
                   "torch-fp32, torch-bf16, openvino-fp32, openvino-bf16 ($ANNOTATOR_RUNTIME)")
    p.add_argument("--out", type=Path, default=Path("mask.png"),
                   help="mask file to write (0/255): .png (default mask.png), .tif or .bmp")
    p.add_argument("--overlay", type=Path, help="also write the image with the mask drawn on "
                   "it (.png, .jpg, .tif, .bmp or .webp)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    p.set_defaults(func=run)


def output_format(path: Path, image: Path, option: str, formats: dict[str, str]) -> str:
    """The Pillow format `path`'s suffix names; InputError for a folder, the input image
    itself or a suffix outside `formats`."""
    if path.is_dir():
        raise InputError(f"{option} {path}: is a folder; give a file name such as "
                         f"{path / 'mask.png'}")
    if path.exists() and image.exists() and os.path.samefile(path, image):
        raise InputError(f"{option} {path}: is the input image; writing there would destroy it")
    suffix = path.suffix.lower()
    if suffix not in formats:
        why = ("JPEG and WebP are lossy and would blur the mask's edges; "
               if suffix in (".jpg", ".jpeg", ".webp") else "")
        raise InputError(f"{option} {path}: {why}the file name must end in "
                         f"{', '.join(sorted(formats))}")
    return formats[suffix]


def _check_checkpoint_option(args) -> None:
    if not args.checkpoint:
        return
    if not args.engine:
        raise InputError("--checkpoint needs --engine (sam, sam2, ...)")
    from engines.registry import get_spec
    if not hasattr(get_spec(args.engine).factory, "from_checkpoint"):
        raise InputError(f"--checkpoint {args.checkpoint}: engine {args.engine} takes no "
                         "checkpoint (it needs no model); leave the option out")
    if not args.checkpoint.is_file():
        raise InputError(f"--checkpoint {args.checkpoint}: no such file")


def _runtime_note(engine) -> str:
    """', encoder RUNTIME' (and how to pick the fastest one when not calibrated yet)."""
    from engines.runtime import encoder_slot_of
    slot = encoder_slot_of(engine)
    if slot is None:
        return ""
    hint = " (not calibrated: `annotator models calibrate` picks the fastest for this CPU)" \
        if slot.needs_calibration else ""
    return f", encoder {slot.runtime}{hint}"


def run(args) -> int:
    from annotator.core.engine_image import load_engine_copy
    from annotator.core.images import load_image
    from annotator.core.masks_io import save_mask, save_overlay
    from engines.router import Router
    from engines.types import Prompt

    _check_checkpoint_option(args)
    if args.runtime:            # checked here (one line, exit 2), then read by every engine
        from engines.runtime import ENV_RUNTIME, requested_runtime
        requested_runtime(args.runtime, "--runtime")
        os.environ[ENV_RUNTIME] = args.runtime
    if args.device:             # the classic engine ignores it: check it here for all
        from engines.runtime import choose_device
        choose_device(args.device)
    mask_format = output_format(args.out, args.image, "--out", MASK_FORMATS)
    overlay_format = None if args.overlay is None else \
        output_format(args.overlay, args.image, "--overlay", OVERLAY_FORMATS)
    copy = load_engine_copy(args.image)   # engines need only a reduced copy (RGB)
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
    print(f"engine: {routed.explain()}")
    print(f"device: {getattr(engine, 'device', 'cpu')}{_runtime_note(engine)}; "
          f"embedding: {source} in {1000 * (t1 - t0):.0f} ms; "
          f"decode: {1000 * (t2 - t1):.0f} ms")
    if not mask.any():
        print(f"annotator segment: no object found: {routed.name} returned an empty mask for "
              f"this prompt on {args.image}; nothing written (try another click or a box)",
              file=sys.stderr)
        return 1
    save_mask(mask, args.out, mask_format)
    if args.overlay:   # the full-size pixels, read only now that the engine's are gone
        save_overlay(load_image(args.image), mask, args.overlay, overlay_format)
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
    from engines.files import CacheKey, EmbeddingCache, default_cache_dir, image_digest
    cache = EmbeddingCache(memory_mb=0, disk_dir=default_cache_dir())
    key = CacheKey(image_digest(image), engine.backbone_key, engine.input_side)
    emb, source = cache.get_or_compute(key, lambda: engine.embed(image))
    return at_full_size(emb, copy.full_size), source
