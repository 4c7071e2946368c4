"""Run `annotator train` in a child process and follow its event stream (no Qt, no torch).

The window's Train dialog must never wait on the trainer, so nothing here blocks unless
asked to: `start` launches the process, `poll` returns the events written since the last
poll (a line the trainer is still writing waits for the next poll) and updates `state`
and `progress`, `stop` asks the trainer to stop and a later `poll` kills it if it is
still there `stop_timeout` seconds on. SIGINT makes the trainer write an `error:
interrupted` event and exit; its plugin is only ever written by an atomic rename at the
very end (engines/files/plugins.py), so a stopped run leaves no half-written plugin behind.

The event format is training/events.py's (start / encode / step / checkpoint / eval /
done / error, one JSON object a line). The child's stdout and stderr go to a log file
beside the events (annotator/core/child_process.py); its last lines are the error
message when the process dies without an error event. The run holds out the images of
`HELD_OUT` (val fraction, seed), passed explicitly, so File ▸ Evaluate… (eval_job.py)
scores the plugin on exactly those images.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from annotator.core import child_process
from annotator.core.child_process import DONE, FAILED, RUNNING, STOPPED  # noqa: F401  (re-exported)
from annotator.core.errors import CoreError
from engines import manifest

EVENTS_FILE, LOG_FILE = "events.jsonl", "train.log"
# engines whose plugin `annotator train` makes (the Train dialog lists them)
TRAINABLE_ENGINES = tuple(info.name for info in manifest.list_engines(trainable=True))
ENV_CACHE_DIR = "ANNOTATOR_CACHE_DIR"            # as engines/files/cache.py (which imports torch)
# (val fraction, seed) of the validation split of a run started here: `annotator train`'s
# defaults, passed explicitly because the evaluation must hold out the same images
HELD_OUT = (0.1, 0)


class TrainingDataError(CoreError):
    """The project cannot be turned into training data (e.g. no accepted masks yet)."""


@dataclass
class Progress:
    """What a person wants to see of a run, kept up to date by `TrainingJob.poll`."""
    phase: str = "starting"     # starting / encoding / training / finishing / done
    done: int = 0               # images encoded, or steps taken
    total: int = 0
    loss: float | None = None
    lr: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None  # from the step rate once two steps are in
    metrics: dict[str, Any] = field(default_factory=dict)
    _first_step: tuple[float, int] | None = None    # (event time, step) of the first step


def feature_cache_dir() -> Path:
    """Where runs started from the window cache frozen features: outside the models folder,
    whose plugins/ the model picker scans for *.safetensors (the cache's files too)."""
    override = os.environ.get(ENV_CACHE_DIR, "").strip()
    if override:
        return Path(override).expanduser() / "train-features"
    import platformdirs
    return Path(platformdirs.user_cache_dir("sam-annotator")) / "train-features"


def default_run_dir(models_dir: str | Path, engine: str) -> Path:
    """A fresh folder for one run under `<models>/plugins/ENGINE/`, where the router and
    the model picker find the plugin it writes."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(models_dir) / "plugins" / engine / stamp
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{stamp}-{n}")
    return path


def export_project_for_training(project: Any, out_dir: str | Path) -> tuple[Path, Path]:
    """Write the project's accepted masks (with the prompts that made them) as COCO to
    `out_dir/coco.json`; returns (that file, the images folder). `project` is an open
    Project or the path of a project file, which is opened here with its own connection,
    so a worker thread can export while the window keeps its own."""
    from annotator.core.formats import coco
    from annotator.core.store import Project
    if isinstance(project, (str, os.PathLike)):
        opened = Project.open(project, read_only=True)   # the window holds the lock
        try:
            return export_project_for_training(opened, out_dir)
        finally:
            opened.close()
    dataset = project.export_dataset()
    if not dataset.annotations:
        raise TrainingDataError(f"{project.path}: the project has no accepted masks yet; "
                                "label some objects before training on it")
    out = Path(out_dir) / "coco.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    coco.write(dataset, out, project.image_root)
    return out, Path(project.image_root)


class TrainingJob(child_process.ChildJob):
    def __init__(self, engine: str, data_json: str | Path, images_dir: str | Path,
                 backbone: str | Path, out_dir: str | Path, steps: int, batch_size: int,
                 extra_args: Sequence[str] = (), python: str = sys.executable, *,
                 launcher: Sequence[str] | None = None, env: dict[str, str] | None = None,
                 stop_timeout: float = 10.0):
        """`launcher` replaces `python -m annotator.cli` (tests run a small script that
        writes events); the arguments from `train` on are the same either way."""
        self.engine = engine
        self.out_dir = Path(out_dir).absolute()    # the done event's path is then absolute
        self.events_path = self.out_dir / EVENTS_FILE
        self.log_path = self.out_dir / LOG_FILE
        self.argv = [*(launcher or (python, "-m", "annotator.cli")), "train", engine,
                     "--data", str(data_json), "--images", str(images_dir),
                     "--backbone", str(backbone), "--out", str(self.out_dir),
                     "--steps", str(int(steps)), "--batch-size", str(int(batch_size)),
                     "--events", str(self.events_path),
                     "--val-fraction", str(HELD_OUT[0]), "--seed", str(HELD_OUT[1]),
                     *map(str, extra_args)]
        self.env = env
        self.stop_timeout = stop_timeout
        self.progress = Progress(total=int(steps))
        self.state = "new"
        self.error: str | None = None
        self.result_plugin: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._offset = 0
        self._started = 0.0
        self._stop_deadline: float | None = None

    # -- running

    def start(self) -> TrainingJob:
        """Launch the trainer (OSError if the program cannot be started)."""
        if self._proc is not None:
            raise RuntimeError("this job was started already")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        try:        # the trainer appends: an earlier run's events are not this run's
            self._offset = self.events_path.stat().st_size
        except FileNotFoundError:
            self._offset = 0
        self._launch(self.argv, self.log_path, self.env)
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def poll(self) -> list[dict]:
        """New complete events since the last poll; updates state, progress and results."""
        if self._proc is None:
            return []
        exited = self._proc.poll() is not None    # first: then every event it wrote is on disk
        events = self._read_new()
        for event in events:
            self._apply(event)
        if self.state == RUNNING:
            self.progress.elapsed_s = time.monotonic() - self._started
            if exited:
                self._ended_without_result()
            elif self._overdue():
                self._proc.kill()                 # it ignored SIGINT for too long
        return events

    def log_tail(self, lines: int = 8, max_chars: int = 2000) -> str:
        """The last lines the child printed (a progress bar's carriage returns split too)."""
        return child_process.log_tail(self.log_path, lines, max_chars)

    # -- reading events

    def _read_new(self) -> list[dict]:
        try:
            with open(self.events_path, "rb") as f:
                size = f.seek(0, 2)
                if size < self._offset:          # replaced or truncated: read it anew
                    self._offset = 0
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []                            # only a partial line so far
        self._offset += end + 1
        events = []
        for line in chunk[:end].split(b"\n"):
            try:
                event = json.loads(line)
            except ValueError:                   # blank or foreign: not an event
                continue
            if isinstance(event, dict) and isinstance(event.get("event"), str):
                events.append(event)
        return events

    def _apply(self, event: dict) -> None:
        kind, p = event["event"], self.progress
        if kind == "start":
            p.total = int(event.get("steps") or p.total)
        elif kind == "encode":
            p.phase, p.done, p.total = "encoding", int(event.get("done", 0)), \
                int(event.get("total", 0))
        elif kind == "step":
            self._step(event)
        elif kind == "eval":
            p.metrics.update(event.get("metrics") or {})
        elif kind == "done":
            plugin = event.get("plugin")
            self.result_plugin = Path(plugin) if plugin else None
            p.metrics.update(event.get("metrics") or {})
            p.phase, p.eta_s = "done", 0.0
            self.state = DONE
        elif kind == "error" and self.state == RUNNING:
            self.state = STOPPED if self.stop_requested else FAILED
            self.error = str(event.get("message") or "the trainer reported an error")

    def _step(self, event: dict) -> None:
        p = self.progress
        p.done, p.total = int(event.get("step", 0)), int(event.get("steps") or p.total)
        p.phase = "finishing" if p.total and p.done >= p.total else "training"
        p.loss = _number(event.get("loss"))
        p.lr = _number(event.get("lr"))
        t = _number(event.get("time"))
        if t is None:
            return
        if p._first_step is None:
            p._first_step = (t, p.done)
        t0, s0 = p._first_step
        if p.done > s0 and t > t0:
            p.eta_s = max(0.0, (p.total - p.done) * (t - t0) / (p.done - s0))

    def _ended_without_result(self) -> None:
        code = self._proc.returncode
        if self.stop_requested:
            self.state = STOPPED
            return
        self.state = FAILED
        tail = self.log_tail()
        self.error = (f"the trainer exited with status {code} without a result"
                      + (f":\n{tail}" if tail else f" (nothing in {self.log_path})"))


def describe_event(e: dict) -> str | None:
    """One log line for people, or None for an event not worth a line (most encode
    events; of the steps, the first, the last and every hundredth of the run)."""
    kind = e.get("event")
    if kind == "start":
        return (f"start: {e.get('engine')} on {e.get('backbone')}, {e.get('steps')} steps, "
                f"batch {e.get('batch_size')}")
    if kind == "encode":
        done, total = e.get("done"), e.get("total")
        return f"caching features: {done} / {total} images" if done in (1, total) else None
    if kind == "step":
        step, steps = int(e.get("step", 0)), int(e.get("steps") or 1)
        if step in (1, steps) or step % max(1, steps // 100) == 0:
            return (f"step {step} / {steps}  loss {_number(e.get('loss')) or 0:.4f}  "
                    f"lr {_number(e.get('lr')) or 0:.2e}")
        return None
    if kind in ("checkpoint", "eval", "done", "error"):
        return f"{kind}: " + ", ".join(f"{k} {v}" for k, v in e.items()
                                       if k not in ("event", "time"))
    return None


def clock(seconds: float) -> str:
    """1:02:03 or 2:03."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None

