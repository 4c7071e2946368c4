"""`annotator models calibrate CHECKPOINT`: time every encoder runtime this machine offers
on the checkpoint's encoder, check each one's features against torch fp32, remember the
fastest within its bound for this architecture on this machine (engines/runtime/choice.py),
and build it (an OpenVINO conversion is kept on disk). The window does the same in the
background on first use; this is the command-line way, with progress."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("checkpoint", metavar="NAME_OR_PATH",
                     help="a SAM / SAM 2.1 / HQ-SAM checkpoint file, or a catalogue name that is "
                          "installed")


def run(args: argparse.Namespace) -> int:
    from engines.files import catalogue
    from engines.runtime import encoder_slot_of
    from engines.types import EngineError
    path = Path(args.checkpoint)
    if not path.is_file():
        directory = catalogue.models_dir(getattr(args, "models_dir", None))
        try:
            entry = catalogue.get_entry(args.checkpoint)
        except (KeyError, EngineError, ValueError):
            entry = None
        if entry is None or not catalogue.is_installed(entry, directory):
            print(f"annotator models calibrate: error: {args.checkpoint}: no such checkpoint file "
                  "or installed model", file=sys.stderr)
            return 2
        path = catalogue.model_path(entry, directory)
    try:
        host, arch = _encoder_engine(path)
    except EngineError as exc:
        print(f"annotator models calibrate: error: {exc}", file=sys.stderr)
        return 2
    slot = encoder_slot_of(host)
    if slot is None:
        print(f"annotator models calibrate: error: {arch} has no CPU encoder runtime to choose",
              file=sys.stderr)
        return 2
    slot.needs_calibration = True          # asked for: measure again
    picked = slot.prepare(progress=lambda line: print(line, file=sys.stderr, flush=True))
    record = slot.store.calibration(slot.arch_key, _facts())
    print(f"{arch} ({path.name}) on this CPU: {picked} answers")
    if record:
        print("| runtime | encoder (s) | feature error vs fp32 |")
        print("|---|---|---|")
        for runtime, seconds in record["seconds"].items():
            print(f"| {runtime} | {seconds:.2f} | {record['rel_error'][runtime]:.1e} |")
        for runtime, why in record.get("failed", {}).items():
            print(f"| {runtime} | failed: {why} | |")
    if slot.message:
        print(f"note: {slot.message}", file=sys.stderr)
    return 0


def _encoder_engine(path: Path):
    """(engine, its backbone arch) whose encoder graph the file feeds: HQ-SAM's for an
    official sam_hq_* file (its graph also returns the early ViT feature, so it has its
    own conversion and calibration), else the plain SAM / SAM 2 host's."""
    from engines.files import peek_state_dict
    from engines.hosts import build_host
    from engines.hq_sam import has_hq_weights
    if has_hq_weights(peek_state_dict(path, expected="SAM, SAM 2.1 or HQ-SAM")):
        from engines.hq_sam import HqSamEngine
        engine = HqSamEngine.from_checkpoint(path, device="cpu")
        return engine, engine.checkpoint_key.rpartition(":")[0]
    return build_host(path, device="cpu", needed_by="calibration")


def _facts():
    from engines.runtime import machine_facts
    return machine_facts()
