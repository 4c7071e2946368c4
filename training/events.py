"""Progress of long jobs as a JSON-lines event stream (another process follows it) plus
a progress bar for people.

Events are one JSON object per line, flushed as written, each with "event" and "time":
  start    {engine, backbone, steps, batch_size, world, out}
  encode   {done, total}                      frozen features being cached
  step     {step, steps, loss, bce, dice, lr, images_per_s}
  checkpoint {step, path}
  eval     {split, metrics: {...}}
  done     {plugin, metrics, seconds}
  error    {message}
`--events -` sends them to stdout (and the bar is off); `--events FILE` appends to FILE.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import IO, Any


class EventStream:
    def __init__(self, target: str | Path | None = None, *, progress: bool = True,
                 enabled: bool = True):
        """`target`: "-" for stdout, a path, or None for no event stream. `enabled=False`
        (non-zero ranks under torchrun) writes nothing at all."""
        self.enabled = enabled
        self._file: IO[str] | None = None
        self._own = False
        if enabled and target == "-":
            self._file = sys.stdout
        elif enabled and target is not None:
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")
            self._own = True
        self._bar = None
        self._want_bar = enabled and progress and target != "-"

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        if self._file is not None:
            record = {"event": event, "time": round(time.time(), 3), **fields}
            self._file.write(json.dumps(record, default=_plain) + "\n")
            self._file.flush()
        self._update_bar(event, fields)

    def _update_bar(self, event: str, fields: dict) -> None:
        if not self._want_bar:
            return
        if event in ("encode", "step"):
            total = fields.get("total") or fields.get("steps")
            done = fields.get("done") or fields.get("step")
            desc = "caching features" if event == "encode" else "training"
            if self._bar is None or getattr(self._bar, "desc", None) != desc:
                self._close_bar()
                from tqdm import tqdm
                # disable=None: no bar when stderr is not a terminal (a log file would
                # get one line per update; the event stream is for machines)
                self._bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False,
                                 dynamic_ncols=True, disable=None, mininterval=0.5)
            if "loss" in fields:
                self._bar.set_postfix(loss=f"{fields['loss']:.4f}", refresh=False)
            self._bar.update(done - self._bar.n)
        elif event in ("done", "error"):
            self._close_bar()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        self._close_bar()
        if self._own and self._file is not None:
            self._file.close()
        self._file = None


def _plain(value: Any):
    """JSON for numpy / torch scalars and paths."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def read_events(path: str | Path) -> list[dict]:
    """Every complete event in a stream file (a partly written last line is skipped)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
