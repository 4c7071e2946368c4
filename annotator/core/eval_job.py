"""Run `annotator eval` in a child process on a project's held-out images (no Qt, no torch).

File ▸ Evaluate… scores a trained plugin beside its plain host (the prompt protocols of
training/evaluate.py) on the project's COCO export (training_job.export_project_for_training,
the trainer's input). It asks for `--split val` with the val fraction and seed a run from
File ▸ Train… holds out (training_job.HELD_OUT); the trainer and the eval command split
with the same function (annotator.core.formats._split.split_ids, via training.data), so
the images scored are exactly those the plugin never trained on. `held_out` names them
for the person reading the numbers.

Like TrainingJob, nothing blocks: `start` launches the process, `poll` reads what it has
printed since (the eval command's "evaluating ... on N instances" line gives the total,
a "[done/total]" line the progress) and, once it has exited, its --json file becomes
`results`. `stop` sends SIGINT; a later `poll` kills it `stop_timeout` seconds on. A
failure is one line: the last line the command printed.
"""
from __future__ import annotations

import json
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from annotator.core import child_process
from annotator.core.child_process import DONE, FAILED, RUNNING, STOPPED  # noqa: F401  (re-exported)
from annotator.core.errors import CoreError
from annotator.core.training_job import HELD_OUT
from engines import manifest

RESULT_FILE, LOG_FILE = "eval.json", "eval.log"
# engines `annotator eval` scores with the prompt protocols, beside their host: the
# trained plugins that answer clicks and boxes (hq-sam, stable-sam)
EVAL_ENGINES = tuple(info.name for info in manifest.list_engines(task="points", trainable=True))
DEFAULT_PROTOCOLS = "noisy-box,1-point,3-point,tight-box"     # the eval command's default
DEFAULT_PROMPTS = 20                                          # random prompts per object
_TOTAL = re.compile(r"^evaluating .* on (\d+) instances")
_DONE = re.compile(r"\[(\d+)\s*/\s*(\d+)\]")


class EvalInputError(CoreError):
    """Something the evaluation needs is missing; names it (nothing is started or written)."""


@dataclass
class Progress:
    phase: str = "starting"     # starting (loading the models) / evaluating / done
    done: int = 0               # objects scored
    total: int = 0
    elapsed_s: float = 0.0
    eta_s: float | None = None


@dataclass(frozen=True)
class HeldOut:
    images: list[str]           # file names of the held-out images
    objects: int                # their objects (the instances `annotator eval` scores)
    of_images: int              # images in the export


@dataclass(frozen=True)
class Row:
    protocol: str
    host: dict[str, float | None]      # miou, mbiou, st, n (percent; None where not measured)
    plugin: dict[str, float | None]
    paired: dict[str, float] | None    # {diff, lo, hi}: plugin - host, where the JSON has it


def held_out(data_json: str | Path, held: tuple[float, int] = HELD_OUT) -> HeldOut:
    """The images (and their objects) the trainer held out of this COCO export."""
    from annotator.core.formats import coco
    from annotator.core.formats._split import Split, split_ids
    ds = coco.read(data_json, check_images=False)
    _, val = split_ids(((img.id, img.group) for img in ds.images), Split("group", *held),
                       keep_both=True)
    names = sorted(img.file_name for img in ds.images if img.id in val)
    objects = sum(1 for a in ds.annotations if a.image_id in val and not a.iscrowd)
    return HeldOut(names, objects, len(ds.images))


def compare(results: dict[str, Any], engine: str) -> tuple[str, list[Row]]:
    """(host engine name, one Row per protocol) from the eval command's JSON: the plugin
    engine `engine` beside the other engine in it. Keys other than the metrics (per-object
    results, ...) are ignored; a "paired" block {diff, lo, hi} is kept where present."""
    if engine not in results:
        raise EvalInputError(f"the results have no {engine!r} entry (engines: "
                             f"{', '.join(results) or 'none'})")
    host = next((name for name, per in results.items()
                 if name != engine and isinstance(per, dict)), "")
    rows = []
    for protocol, scores in results[engine].items():
        if not isinstance(scores, dict) or "miou" not in scores:
            continue
        other = (results.get(host) or {}).get(protocol) or {}
        paired = scores.get("paired") or other.get("paired")
        rows.append(Row(protocol, _metrics(other), _metrics(scores),
                        paired if isinstance(paired, dict) and "diff" in paired else None))
    return host, rows


def _metrics(scores: dict) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in ("miou", "mbiou", "st", "n"):
        value = scores.get(key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)
        out[key] = float(value) if ok else None
    return out


class EvalJob(child_process.ChildJob):
    def __init__(self, engine: str, data_json: str | Path, images_dir: str | Path,
                 backbone: str | Path, plugin: str | Path, out_dir: str | Path, *,
                 protocols: str = DEFAULT_PROTOCOLS, prompts: int = DEFAULT_PROMPTS,
                 held: tuple[float, int] = HELD_OUT, python: str = sys.executable,
                 launcher: Sequence[str] | None = None, env: dict[str, str] | None = None,
                 stop_timeout: float = 10.0):
        """`launcher` replaces `python -m annotator.cli`; the arguments from `eval` on are
        the same either way."""
        self.engine, self.prompts = engine, int(prompts)
        self.data, self.images = Path(data_json), Path(images_dir)
        self.backbone, self.plugin = Path(backbone), Path(plugin)
        self.out_dir = Path(out_dir).absolute()
        self.json_path, self.log_path = self.out_dir / RESULT_FILE, self.out_dir / LOG_FILE
        self.argv = [*(launcher or (python, "-m", "annotator.cli")), "eval", engine,
                     "--data", str(data_json), "--images", str(images_dir),
                     "--backbone", str(backbone), "--plugin", str(plugin),
                     "--protocol", protocols, "--prompts", str(self.prompts),
                     "--split", "val", "--val-fraction", str(held[0]), "--seed", str(held[1]),
                     "--json", str(self.json_path)]
        self.env, self.stop_timeout = env, stop_timeout
        self.progress = Progress()
        self.state = "new"
        self.error: str | None = None
        self.results: dict[str, Any] | None = None
        self._proc = None
        self._offset = 0
        self._started = 0.0
        self._first: tuple[float, int] | None = None     # (time, done) of the first count
        self._stop_deadline: float | None = None

    def check(self) -> None:
        """EvalInputError naming the first missing input (before anything is written)."""
        if self.engine not in EVAL_ENGINES:
            raise EvalInputError(f"engine {self.engine!r}: File ▸ Evaluate… scores "
                                 f"{', '.join(EVAL_ENGINES)}")
        for path, what, ok in ((self.data, "COCO export", self.data.is_file()),
                               (self.images, "images folder", self.images.is_dir()),
                               (self.plugin, "plugin file", self.plugin.is_file()),
                               (self.backbone, "backbone checkpoint", self.backbone.is_file())):
            if not ok:
                raise EvalInputError(f"{path}: no {what} there")
        if self.prompts < 1:
            raise EvalInputError(f"prompts per object must be at least 1, not {self.prompts}")

    def start(self) -> EvalJob:
        """Check the inputs, then launch `annotator eval` (OSError if it cannot start)."""
        if self._proc is not None:
            raise RuntimeError("this job was started already")
        self.check()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.json_path.unlink(missing_ok=True)      # an earlier run's numbers are not ours
        self._launch(self.argv, self.log_path, self.env)
        return self

    def poll(self) -> list[str]:
        """Lines printed since the last poll; updates progress, and state once it exits."""
        if self._proc is None:
            return []
        exited = self._proc.poll() is not None
        lines = self._read_new(everything=exited)
        for line in lines:
            self._apply(line)
        if self.state == RUNNING:
            self.progress.elapsed_s = time.monotonic() - self._started
            if exited:
                self._ended()
            elif self._overdue():
                self._proc.kill()
        return lines

    def _read_new(self, everything: bool) -> list[str]:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return []
        chunk = chunk.replace(b"\r", b"\n")
        end = len(chunk) if everything else chunk.rfind(b"\n") + 1   # whole lines only
        self._offset += end
        text = chunk[:end].decode("utf-8", "replace")
        return [line.rstrip() for line in text.split("\n") if line.strip()]

    def _apply(self, line: str) -> None:
        p = self.progress
        total = _TOTAL.match(line)
        if total:
            p.phase, p.total = "evaluating", int(total.group(1))
            return
        count = _DONE.search(line)
        if count:
            p.phase, p.done, p.total = "evaluating", int(count.group(1)), int(count.group(2))
            now = time.monotonic()
            if self._first is None:
                self._first = (now, p.done)
            t0, d0 = self._first
            if p.done > d0:
                p.eta_s = max(0.0, (p.total - p.done) * (now - t0) / (p.done - d0))

    def _ended(self) -> None:
        code = self._proc.returncode
        if self.stop_requested:
            self.state = STOPPED
            return
        if code == 0:
            try:
                self.results = json.loads(self.json_path.read_text())
            except (OSError, ValueError) as exc:
                self.state = FAILED
                self.error = f"annotator eval wrote no results to {self.json_path} ({exc})"
                return
            self.state, self.progress.phase, self.progress.eta_s = DONE, "done", 0.0
            return
        self.state = FAILED
        last = child_process.log_tail(self.log_path, lines=1)
        self.error = last or f"annotator eval exited with status {code} and printed nothing"
