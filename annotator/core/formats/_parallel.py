"""Spread per-object work (mask -> polygons, mask -> PNG) over processes for big exports.

The work is many small numpy/OpenCV calls, so threads would serialise on the GIL.
The workers are fresh interpreters (`python -m annotator.core.formats._parallel`)
fed pickles on stdin, not multiprocessing children: a fork of a process that runs Qt
or torch threads can deadlock, and "spawn" re-runs the caller's main script in every
child. If workers cannot start (a frozen app, no interpreter) or die, the work is done
in this process instead, so the pool only ever changes the speed.

Inputs below MIN_ITEMS stay in this process (worker start-up takes about a second).
ANNOTATOR_EXPORT_WORKERS=1 turns the pool off; =N sets the number of workers.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

from annotator.core.errors import FormatError

MIN_ITEMS = 3000


def workers() -> int:
    value = os.environ.get("ANNOTATOR_EXPORT_WORKERS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, min(os.cpu_count() or 1, 8))


def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
    """[fn(item) for item in items], in order. `fn` must be picklable (a module-level
    function, or a functools.partial of one). An exception raised by `fn` in a worker
    is raised here."""
    n = min(workers(), len(items) // (MIN_ITEMS // 2) or 1)
    if n <= 1 or len(items) < MIN_ITEMS:
        return [fn(item) for item in items]
    size = -(-len(items) // n)
    parts = [list(items[i:i + size]) for i in range(0, len(items), size)]
    try:
        with ThreadPoolExecutor(len(parts)) as threads:
            answers = list(threads.map(lambda part: _run_worker(fn, part), parts))
    except _WorkerFailed:
        return [fn(item) for item in items]
    out: list[Any] = []
    for answer in answers:
        if isinstance(answer, _RemoteFormatError):
            raise FormatError(answer.path, answer.problem, answer.record)
        if isinstance(answer, BaseException):
            raise answer
        out.extend(answer)
    return out


class _RemoteFormatError(Exception):
    """A FormatError on its way back from a worker (FormatError's own pickling loses
    its fields)."""

    def __init__(self, path: str, problem: str, record: str | None):
        super().__init__(path, problem, record)
        self.path, self.problem, self.record = path, problem, record


class _WorkerFailed(Exception):
    pass


def _run_worker(fn: Callable[[Any], Any], part: list[Any]) -> Any:
    package_root = str(Path(__file__).resolve().parents[3])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env["ANNOTATOR_EXPORT_WORKERS"] = "1"
    try:
        proc = subprocess.run([sys.executable, "-m", __name__],
                              input=pickle.dumps((fn, part), protocol=pickle.HIGHEST_PROTOCOL),
                              capture_output=True, env=env, check=False)
    except OSError as exc:
        raise _WorkerFailed(str(exc)) from None
    if proc.returncode != 0 or not proc.stdout:
        raise _WorkerFailed(proc.stderr.decode(errors="replace")[-2000:])
    try:
        return pickle.loads(proc.stdout)
    except Exception as exc:  # a truncated answer: treat the worker as failed
        raise _WorkerFailed(str(exc)) from None


def _worker_main() -> None:
    fn, part = pickle.load(sys.stdin.buffer)
    try:
        answer: Any = [fn(item) for item in part]
    except FormatError as exc:
        answer = _RemoteFormatError(exc.path, exc.problem, exc.record)
    except Exception as exc:     # sent back and raised in the caller
        answer = exc
    try:
        data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:            # an exception that cannot be pickled: keep its words
        data = pickle.dumps(RuntimeError(f"{type(answer).__name__}: {answer}"))
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    # run through the importable module, so what the worker pickles (our exception
    # wrapper) names a module the caller can import, not "__main__"
    from annotator.core.formats import _parallel
    _parallel._worker_main()
