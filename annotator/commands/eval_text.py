"""`annotator eval sam-mi ...`: the text engine's mIoU and mask AP beside its baselines.

Called by annotator/commands/train.py for engines whose task is "text". `--backbone` is
the SAM / SAM 2 file, `--plugin` a trained SAM-MI plugin (without one the engine runs
training-free), `--option clip=FILE` the CLIP file (else the one beside the SAM file),
`--option background=NAME` scores unlabelled pixels as that class (else they are
ignored); other `--option`s are request options (pred_iou_thresh, sampling, ...).
Baselines (unless --no-baseline): the dense grid x grid pipeline on the same engine
(SAM "everything" + the same class assignment and SMAgg) and, with a plugin, the
training-free mode on the same files.
"""
from __future__ import annotations

import json
import sys
from dataclasses import fields
from pathlib import Path


def eval_text(args, items, options: dict) -> int:
    from engines.registry import get_spec
    from engines.sam_mi import TextOptions
    from engines.types import EngineError
    from training.evaluate_text import evaluate_text, format_text_table
    options = dict(options)
    background = options.pop("background", None)
    request = {k: options.pop(k) for k in [f.name for f in fields(TextOptions)] if k in options}
    request.pop("classes", None)
    factory = get_spec(args.engine).factory
    try:
        engine = factory.from_checkpoint(args.backbone, device=args.device, plugin=args.plugin,
                                         **options)
    except TypeError as exc:          # a misspelt --option reaches from_checkpoint
        return _error(f"{args.engine} takes no such option ({exc})")
    except (EngineError, ValueError) as exc:
        return _error(str(exc))
    try:
        engine.check_options({**request, "classes": ["-"]})
        pipelines = {f"{args.engine} ({engine.mode})": (engine, request)}
        if not args.no_baseline:
            pipelines[f"dense {engine.cfg.grid}x{engine.cfg.grid} grid ({engine.mode})"] = (
                engine, {**request, "prompter": "grid"})
            if args.plugin:
                free = factory.from_checkpoint(args.backbone, device=args.device, **options)
                pipelines[f"{args.engine} (training-free)"] = (free, request)
        print(f"evaluating {', '.join(pipelines)} on {len({i.source for i in items})} images",
              file=sys.stderr)
        results = evaluate_text(pipelines, items, background=background)
    except (EngineError, ValueError) as exc:
        return _error(str(exc))
    print(format_text_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0



def _error(message: str) -> int:
    print(f"annotator eval: error: {message}", file=sys.stderr)
    return 2
