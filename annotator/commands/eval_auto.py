"""`annotator eval pmg-sam|ip-sam ...`: a promptless engine beside its paper's baselines.

One markdown table of the map metrics (the manifest's `eval_metrics`: DIS's six for
pmg-sam, IP-SAM's six for ip-sam) with a row per engine and protocol; for an engine with
"cos" among them a second table, COCO mask AP of its instances (training/cos_eval.py).
The baselines are the manifest's `eval_baselines`, run on `--baseline CKPT` (a SAM or a
SAM 2 file: the family is read from the file), by default on the engine's own host
checkpoint (`--backbone`) when it sits on one, else on the models folder's (the router's).
`--json FILE` writes every number, `--coco-dir DIR` the COS protocol's COCO files. A
progress line per `--progress-every` images on stderr.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def eval_auto(args, items, options: dict) -> int:
    from annotator.commands.train import option_pairs
    from engines import manifest
    from engines.registry import get_spec
    from training.evaluate_auto import PICKS, format_auto_table, run_auto_eval
    from training.cos_eval import format_cos_table
    picks = tuple(p.strip() for p in args.pick.split(",") if p.strip())
    if not picks or any(p not in PICKS for p in picks):
        print(f"annotator eval: error: --pick {args.pick!r}: choose from {', '.join(PICKS)}",
              file=sys.stderr)
        return 2
    try:
        baseline_options = option_pairs(args.baseline_option)
    except ValueError as exc:
        print(f"annotator eval: error: {str(exc).replace('--option', '--baseline-option')}",
              file=sys.stderr)
        return 2
    if args.baseline and not args.no_baseline:
        from training.auto_baselines import checkpoint_family
        checkpoint_family(args.baseline)     # a missing or wrong file fails before any model loads
    info = manifest.get(args.engine)
    metrics = next((m for m in info.eval_metrics if m != "cos"), "dis")
    cos = "cos" in info.eval_metrics
    kwargs = {"device": args.device, **options, **({"plugin": args.plugin} if args.plugin else {})}
    engine = get_spec(args.engine).factory.from_checkpoint(args.backbone, **kwargs)
    engines = {args.engine: (engine, picks)}
    checkpoint = None
    if not args.no_baseline:
        baselines, checkpoint = _baselines(args, info, engine)
        engines.update((k, v) for k, v in baselines.items() if k != args.engine)
    n_images = len({item.source if item.source is not None else id(item) for item in items})
    print(f"evaluating {', '.join(engines)} on {n_images} images ({len(items)} instances)",
          file=sys.stderr)
    every = max(1, args.progress_every)

    def progress(done: int, total: int) -> None:
        if done % every == 0 or done == total:
            print(f"[{done}/{total}] images", file=sys.stderr, flush=True)

    # COS counts every component: no cap on how many instances come back
    propose = {args.engine: {"max_instances": 0}} if cos else {}
    for name, (built, _) in engines.items():
        if name != args.engine and hasattr(built, "check_options"):
            built.check_options(baseline_options)      # a misspelt one: one line, exit 2
            propose[name] = baseline_options
    try:
        result = run_auto_eval(engines, items, options=propose, metrics=metrics, cos=cos,
                               progress=progress)
    except ValueError as exc:      # e.g. --pick map of a proposer that makes no map
        print(f"annotator eval: error: {exc}", file=sys.stderr)
        return 2
    print(format_auto_table(result.maps, metrics))
    if cos:
        print()
        print(format_cos_table(result.cos))
    if cos and args.coco_dir:
        _write_coco_files(Path(args.coco_dir), result.cos_files)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "engine": args.engine, "metrics": metrics, "images": n_images,
            "baseline_checkpoint": checkpoint, "maps": result.maps, "cos": result.cos}, indent=2) + "\n")
    return 0


def _write_coco_files(folder: Path, files: dict) -> None:
    """gt.json (the truth as a COCO dataset) and ENGINE.VARIANT.json (COCO results)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, (name, (gt, results)) in enumerate(files.items()):
        if index == 0:     # every proposer is scored on the same truth
            (folder / "gt.json").write_text(json.dumps(gt) + "\n")
        for variant, found in results.items():
            (folder / f"{name}.{variant}.json").write_text(json.dumps(found) + "\n")


def _baselines(args, info, engine) -> tuple[dict, str | None]:
    """(baselines, the checkpoint they run on): --baseline, else the engine's host file,
    else the router's choice for the first baseline (a note, no baselines, if none)."""
    from engines.router import Router
    from engines.types import EngineError
    from training.auto_baselines import build_baselines
    checkpoint = args.baseline or (args.backbone if info.plugin_hosts else None)
    if checkpoint is not None:     # a bad file is one line, exit 2 (cli.main's boundary)
        return build_baselines(args.engine, checkpoint, device=args.device,
                               image_size=engine.input_side), str(checkpoint)
    rows = info.eval_baselines
    if not rows:
        return {}, None
    first = rows[0].split(":")[0]
    try:
        routed = Router(models_dir=args.models_dir, device=args.device).route("auto", engine=first).engine
    except EngineError as exc:
        print(f"annotator eval: note: no {first} baseline ({exc})", file=sys.stderr)
        return {}, None
    protocols = tuple(row.split(":")[1] for row in rows if row.split(":")[0] == first)
    return {first: (routed, protocols)}, None
