"""The experiments' figures (training/plots.py), as PNGs in docs/figures/ by default.

    .venv/bin/python scripts/plot_experiments.py --curves runs/experiments/hq-sam ...
    .venv/bin/python scripts/plot_experiments.py --evals eval-hq-sam.json eval-stable-sam.json
    .venv/bin/python scripts/plot_experiments.py --examples eval-hq-sam.json --backbone SAM.pth \
        --plugin hq.safetensors --data instances.json --images images/ --protocol noisy-box

--curves: run folders (or their events files) of `annotator train --events` ->
learning_curves.png. --evals: `annotator eval --json` files -> host_vs_plugin.png (mIoU
bars and the paired bootstrap interval of plugin - host). --examples: the plugin engine
and its host of that eval, rebuilt as `annotator eval` builds them, on --count held-out
objects spread over the ranking of plugin - host (the worst, the best and between),
each on the first prompt that object got in the eval (same --seed, --split,
--val-fraction and --categories as the eval) -> examples_ENGINE_PROTOCOL.png.
Bad input is one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "figures"), metavar="DIR")
    ap.add_argument("--curves", nargs="+", default=[], metavar="RUN")
    ap.add_argument("--evals", nargs="+", default=[], metavar="JSON")
    ap.add_argument("--examples", default=None, metavar="EVAL_JSON")
    ap.add_argument("--backbone", metavar="CKPT")
    ap.add_argument("--plugin", metavar="FILE")
    ap.add_argument("--data", metavar="JSON")
    ap.add_argument("--images", metavar="DIR")
    ap.add_argument("--protocol", default="noisy-box")
    ap.add_argument("--count", type=int, default=4, help="example objects")
    ap.add_argument("--split", choices=("val", "train", "all"), default="val")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--categories", default=None, metavar="NAMES")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--device", default=None)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from annotator.core.errors import CoreError
    from engines.types import EngineError
    from training.plots import PlotInputError
    if not (args.curves or args.evals or args.examples):
        return _fail("nothing to plot: give --curves, --evals and/or --examples")
    try:
        written = []
        if args.curves:
            from training.plots import learning_curves, read_run
            runs = [read_run(p) for p in args.curves]
            written.append(learning_curves(runs, Path(args.out) / "learning_curves.png"))
        if args.evals:
            from training.plots import paired_bars, read_eval
            evals = [(Path(p).stem, read_eval(p)) for p in args.evals]
            written.append(paired_bars(evals, Path(args.out) / "host_vs_plugin.png"))
        if args.examples:
            written.append(_examples(args))
    except (PlotInputError, CoreError, EngineError, ValueError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
    for path in written:
        print(f"wrote {path}")
    return 0


def _fail(message: str) -> int:
    print(f"plot_experiments: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def _examples(args) -> Path:
    import numpy as np

    from annotator.commands.train import build_engines, option_pairs
    from training.evaluate import parse_protocols, protocol_prompts, to_prompt
    from training.items import items_from_coco
    from training.metrics import mask_iou
    from training.plots import PlotInputError, example_masks, paired_rows, read_eval
    missing = [f"--{k}" for k in ("backbone", "plugin", "data", "images") if not getattr(args, k)]
    if missing:
        raise PlotInputError(f"--examples needs {', '.join(missing)}")
    if args.count < 1:
        raise PlotInputError(f"--count {args.count}: needs at least 1 example")
    results = read_eval(args.examples)
    (protocol,) = parse_protocols(args.protocol)[:1]
    row = next((r for r in paired_rows(results) if r["protocol"] == protocol.name), None)
    if row is None:
        raise PlotInputError(f"{args.examples}: no host vs plugin comparison under {protocol.name}")
    plugin, host = row["plugin"], row["host"]
    p_index = list(results[plugin]).index(protocol.name)   # the eval's order seeds its prompts
    scores = {e: results[e][protocol.name]["per_object"] for e in (plugin, host)}
    names = [n.strip() for n in args.categories.split(",")] if args.categories else None
    train, val = items_from_coco(args.data, args.images,
                                 args.val_fraction if args.split != "all" else 0.0, args.seed,
                                 category_names=names)
    items = {"val": val, "train": train, "all": train}[args.split]
    index_of = {item.name: i for i, item in enumerate(items)}
    diffs = sorted(range(len(scores[plugin])),
                   key=lambda k: scores[plugin][k]["miou"] - scores[host][k]["miou"])
    picks = [diffs[round(j)] for j in np.linspace(0, len(diffs) - 1, min(args.count, len(diffs)))]
    objects = [scores[plugin][k]["object"] for k in dict.fromkeys(picks)]
    unknown = [o for o in objects if o not in index_of]
    if unknown:
        raise PlotInputError(f"{args.examples}: object {unknown[0]!r} is not in the {args.split} "
                             f"split of {args.data} (give the eval's --split, --seed, "
                             "--val-fraction and --categories)")
    engine_args = argparse.Namespace(engine=plugin, backbone=args.backbone, plugin=args.plugin,
                                     device=args.device, exact=False, no_baseline=False)
    engines = build_engines(engine_args, option_pairs(args.option))
    if list(engines) != [plugin, host]:
        raise PlotInputError(f"--backbone {args.backbone}: its host is {list(engines)[-1]}, "
                             f"the eval's was {host}")
    examples = []
    for name in objects:
        item = items[index_of[name]]
        image, gt = item.load_image(), item.load_mask()
        (tp,) = protocol_prompts(protocol, gt, args.seed, index_of[name], p_index, 1)
        masks = {e: engines[e].predict(engines[e].embed(image), to_prompt(tp, False)).masks[0]
                 for e in (host, plugin)}
        examples.append({"object": name, "image": image, "gt": gt, "prompt": tp, "masks": masks,
                         "iou": {e: 100 * mask_iou(m, gt) for e, m in masks.items()}})
    return example_masks(examples, Path(args.out) / f"examples_{plugin}_{protocol.name}.png",
                         title=f"{host} vs {plugin}, {protocol.name}, {args.split} objects")


if __name__ == "__main__":
    sys.exit(main())
