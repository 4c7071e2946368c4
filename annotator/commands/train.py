"""`annotator train ENGINE ...` and `annotator eval ENGINE ...`.

train: fine-tunes an engine's plugin on a COCO export (training/trainer.py), with a
progress bar and a JSON-lines event stream (`--events FILE`, or `-` for stdout) that
another process (the window's Train dialog) follows. The same command runs under
`torchrun --nproc_per_node N -m annotator.cli train ...` with DDP.
eval: the papers' prompt protocols on a dataset, the engine beside its plain host; for an
"auto" engine (pmg-sam, ip-sam) its paper's metrics beside its paper's baselines
(annotator/commands/eval_auto.py); for a "text" engine (sam-mi) mIoU and mask AP beside
the dense-grid pipeline and the training-free mode (annotator/commands/eval_text.py).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    tr = subparsers.add_parser(
        "train", help="fine-tune an engine's plugin on exported annotations",
        description="Train ENGINE's plugin on a COCO instances file (our export or any "
                    "standard one) on top of a frozen SAM / SAM 2 checkpoint.")
    tr.add_argument("engine", metavar="ENGINE",
                    help="hq-sam, stable-sam, pmg-sam, ip-sam, sam-mi, or sam (whole model)")
    _data_args(tr)
    tr.add_argument("--backbone", required=True, metavar="CKPT",
                    help="SAM / SAM 2 checkpoint the plugin sits on (sam: or scratch:tiny)")
    tr.add_argument("--out", metavar="DIR", default=None,
                    help="where the plugin and the run's state go (default: the models "
                         "folder's plugins/ENGINE, where the window finds it)")
    tr.add_argument("--steps", type=int, default=None, help="optimiser steps (default: --epochs)")
    tr.add_argument("--epochs", type=float, default=1.0)
    tr.add_argument("--batch-size", type=int, default=None,
                    help="global batch (split over processes); default: the engine's recipe "
                         "(ip-sam 1, else 4)")
    tr.add_argument("--lr", type=float, default=None, help="default: the engine's recipe")
    tr.add_argument("--optimizer", choices=("adam", "adamw"), default=None)
    tr.add_argument("--schedule", choices=("constant", "step", "cosine"), default=None)
    tr.add_argument("--grad-clip", type=float, default=None, metavar="NORM")
    tr.add_argument("--warmup-steps", type=int, default=0)
    tr.add_argument("--points", type=int, default=None, dest="num_points",
                    help="loss sample points per mask (default min(12544, S*S/4))")
    tr.add_argument("--prompt-mix", default=None, metavar="JSON",
                    help='prompt kinds and weights, e.g. \'{"tight-box": 1, "points-1": 1}\'')
    tr.add_argument("--checkpoint-every", type=int, default=100, metavar="STEPS")
    tr.add_argument("--resume", action="store_true", help="continue from OUT/train_state.pt")
    tr.add_argument("--cache-dir", default=None, help="frozen-feature cache (default: beside the embedding cache, "
                         "$ANNOTATOR_CACHE_DIR/../train-features)")
    tr.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best)")
    tr.add_argument("--events", default=None, metavar="FILE",
                    help="JSON-lines event stream: a file, or - for stdout")
    tr.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="engine option (e.g. s_p=4, hq_token_only=true), repeatable")
    tr.add_argument("--models-dir", default=None, metavar="DIR")
    tr.set_defaults(func=_cmd_train)

    ev = subparsers.add_parser(
        "eval", help="score an engine with the papers' prompt protocols",
        description="mIoU, boundary IoU and stability (ST) of ENGINE and of its plain host "
                    "under random prompt protocols, on a COCO instances file, and the "
                    "paired bootstrap interval of ENGINE - host over objects.")
    ev.add_argument("engine", metavar="ENGINE")
    _data_args(ev)
    ev.add_argument("--backbone", required=True, metavar="CKPT")
    ev.add_argument("--plugin", default=None, metavar="FILE", help="the trained plugin file")
    ev.add_argument("--protocol", default="noisy-box,1-point,3-point,tight-box",
                    help="comma-separated: tight-box, noisy-box, 1-point, 3-point, 5-point, "
                         "10-point, center-point")
    ev.add_argument("--prompts", type=int, default=20, help="random prompts per instance")
    ev.add_argument("--split", choices=("val", "train", "all"), default="val",
                    help="which side of the group split (same --seed/--val-fraction as train)")
    ev.add_argument("--no-baseline", action="store_true", help="skip the plain host engine")
    ev.add_argument("--categories", default=None, metavar="NAMES",
                    help="comma-separated category names: score only those objects")
    ev.add_argument("--multimask", action="store_true",
                    help="use the best of the multimask candidates instead of the single mask")
    ev.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    ev.add_argument("--bootstrap", type=int, default=2000, metavar="N",
                    help="resamples of the paired bootstrap of plugin - host over objects "
                         "(training/paired.py; seeded by --seed)")
    ev.add_argument("--device", default=None)
    ev.add_argument("--exact", action="store_true", help="reference torch upsampling")
    ev.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="engine option (e.g. hq_token_only=true), repeatable")
    ev.add_argument("--pick", default="map,top-score", metavar="PICKS",
                    help="auto engines: what is scored, comma-separated: map (the probability "
                         "map), top-score, oracle (the mask closest to the truth)")
    ev.add_argument("--baseline", default=None, metavar="CKPT",
                    help="auto engines: the SAM or SAM 2 checkpoint the baselines run on "
                         "(default: the engine's host --backbone if it has one, else the "
                         "models folder's)")
    ev.add_argument("--baseline-option", action="append", default=[], metavar="KEY=VALUE",
                    help="auto engines: proposal option of the segment-everything baseline "
                         "(e.g. points_per_side=16), repeatable")
    ev.add_argument("--coco-dir", default=None, metavar="DIR",
                    help="auto engines with the COS protocol: write its COCO files there "
                         "(gt.json, ENGINE.matched.json, ENGINE.all.json)")
    ev.add_argument("--progress-every", type=int, default=10, metavar="N",
                    help="auto engines: a progress line on stderr every N images")
    ev.add_argument("--models-dir", default=None, metavar="DIR")
    ev.set_defaults(func=_cmd_eval)


def _data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="JSON", help="COCO instances file")
    parser.add_argument("--images", required=True, metavar="DIR", help="its images folder")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)


def option_pairs(pairs: list[str]) -> dict:
    """`--option KEY=VALUE` values as a dict (VALUE as JSON when it parses, else text);
    ValueError names a pair without `=`."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {pair!r} is not KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _prompt_mix(text: str | None) -> dict | None:
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--prompt-mix {text!r} is not JSON ({exc.msg} at column "
                         f"{exc.colno}), e.g. '{{\"tight-box\": 1, \"points\": 1}}'") from None


def _cmd_train(args) -> int:
    from training.trainer import TrainConfig, Trainer
    try:
        mix = _prompt_mix(args.prompt_mix)
        out = args.out or str(_plugins_dir(args.models_dir) / args.engine)
        config = TrainConfig(
            engine=args.engine, backbone=args.backbone, data=args.data, images=args.images,
            out=out, steps=args.steps, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            optimizer=args.optimizer, schedule=args.schedule, grad_clip=args.grad_clip,
            warmup_steps=args.warmup_steps, num_points=args.num_points, prompt_mix=mix,
            seed=args.seed, checkpoint_every=args.checkpoint_every, resume=args.resume,
            val_fraction=args.val_fraction, cache_dir=args.cache_dir, device=args.device,
            events=args.events, options=option_pairs(args.option))
        result = Trainer(config).run()
    except (ValueError, json.JSONDecodeError) as exc:
        print(f"annotator train: error: {exc}", file=sys.stderr)
        return 2
    if result.plugin is not None and args.events != "-":
        print(f"trained {args.engine}: {result.steps} steps, final loss {result.final_loss:.4f}")
        for key, value in sorted(result.metrics.items()):
            print(f"  val {key}: {value:.4f}")
        print(f"saved {result.plugin}")
    return 0


def _cmd_eval(args) -> int:
    from training.evaluate import evaluate_engines, format_table, parse_protocols
    from training.items import items_from_coco
    try:
        protocols = parse_protocols(args.protocol)
        options = option_pairs(args.option)
        names = [n.strip() for n in args.categories.split(",")] if args.categories else None
        train, val = items_from_coco(args.data, args.images,
                                     args.val_fraction if args.split != "all" else 0.0, args.seed,
                                     category_names=names)
    except ValueError as exc:
        print(f"annotator eval: error: {exc}", file=sys.stderr)
        return 2
    items = {"val": val, "train": train, "all": train}[args.split]
    if not items:
        print(f"annotator eval: error: the {args.split} split is empty", file=sys.stderr)
        return 2
    from engines import manifest
    if manifest.get(args.engine) is not None and manifest.get(args.engine).tasks == {"text"}:
        from annotator.commands.eval_text import eval_text   # sam-mi: mIoU + mask AP
        return eval_text(args, items, options)
    if manifest.get(args.engine) is not None and manifest.get(args.engine).tasks == {"auto"}:
        from annotator.commands.eval_auto import eval_auto
        return eval_auto(args, items, options)
    if args.bootstrap < 1:
        print(f"annotator eval: error: --bootstrap {args.bootstrap}: needs at least 1 resample",
              file=sys.stderr)
        return 2
    engines = build_engines(args, options)
    print(f"evaluating {', '.join(engines)} on {len(items)} instances, "
          f"{args.prompts} prompts each", file=sys.stderr)
    results = evaluate_engines(engines, items, protocols, n_prompts=args.prompts, seed=args.seed,
                               multimask=args.multimask, progress=_progress_line())
    print(format_table(results))
    if len(engines) == 2:   # the plugin engine and its plain host, on the same prompts
        from training.paired import add_paired, format_paired
        plugin, host = engines
        add_paired(results, plugin, host, resamples=args.bootstrap, seed=args.seed)
        print(f"\n{plugin} - {host}, paired bootstrap over objects ({args.bootstrap} resamples):")
        print(format_paired(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _progress_line(every_s: float = 2.0):
    """A `[done/total]` line on stderr at most every `every_s` seconds, and at the end."""
    import time
    last = [float("-inf")]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= every_s:
            last[0] = now
            print(f"[{done}/{total}] objects", file=sys.stderr, flush=True)
    return report


def build_engines(args, options: dict) -> dict:
    """{name: engine} for `annotator eval` (and scripts/plot_experiments.py): args.engine
    with args.plugin on args.backbone, then its plain host unless args.no_baseline."""
    import inspect

    from annotator.core.errors import InputError
    from engines.registry import get_spec
    engines = {}
    factory = get_spec(args.engine).factory
    kwargs = {"device": args.device, "exact": args.exact, **options}
    if args.plugin:
        kwargs["plugin"] = args.plugin
    accepted = inspect.signature(factory.from_checkpoint).parameters
    unknown = sorted(k for k in kwargs if k not in accepted)
    if unknown:   # a misspelt --option must not be ignored, nor end in a TypeError
        names = ["--plugin" if k == "plugin" else f"--option {k}" for k in unknown]
        known = sorted(k for k in accepted if k not in ("path", "device", "exact", "arch", "plugin"))
        raise InputError(f"{', '.join(names)}: engine {args.engine} takes no such option"
                         + (f" (options: {', '.join(known)})" if known else ""))
    engine = engines[args.engine] = factory.from_checkpoint(args.backbone, **kwargs)
    if not args.no_baseline:
        # the engine's backbone key names its family ("sam2:hiera_t:...", "sam:vit_b:...",
        # "hq-sam:vit_b:..."), so the checkpoint is not read a second time to find out
        host = "sam2" if engine.backbone_key.startswith("sam2:") else "sam"
        if host != args.engine:
            engines[host] = get_spec(host).factory.from_checkpoint(
                args.backbone, device=args.device, exact=args.exact)
    return engines


def _plugins_dir(models_dir: str | None) -> Path:
    from engines.files import catalogue
    from engines.files import plugins_dir
    return plugins_dir(catalogue.models_dir(models_dir))
