"""What the window's background jobs (training_job.py, eval_job.py) share about their child
process: starting it with its output in a log file, asking it to stop, and the last lines
of that log as the message when it dies (no Qt, no torch).

The child's stdout and stderr go to a log file, not a pipe: a pipe nobody reads would fill
up and stall it, and the file keeps what it said for the person reading the error.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Sequence


def launch(argv: Sequence[str], log_path: str | Path,
           env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `argv` (no shell) with stdout and stderr in `log_path` (replaced); OSError
    when the program cannot be started."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "wb") as log:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env,
                                preexec_fn=_default_sigint if os.name == "posix" else None)


def interrupt(proc: subprocess.Popen) -> None:
    """Ask the child to stop: SIGINT (Python raises KeyboardInterrupt there), terminate
    where there is no SIGINT."""
    if os.name == "posix":
        proc.send_signal(signal.SIGINT)
    else:
        proc.terminate()


def log_tail(path: str | Path, lines: int = 8, max_chars: int = 2000) -> str:
    """The last non-blank lines of a log (a progress bar's carriage returns split too);
    "" when there is no log."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4 * max_chars))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    kept = [s.rstrip() for s in text.replace("\r", "\n").split("\n") if s.strip()]
    return "\n".join(kept[-lines:])[-max_chars:]


def _default_sigint() -> None:
    """In the child, before exec: SIGINT back to its default. A program started in the
    background by a shell inherits SIGINT as ignored, and Python then never raises
    KeyboardInterrupt, so Stop would have to wait for the kill timeout."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# the states of a job that runs one child process
RUNNING, DONE, FAILED, STOPPED = "running", "done", "failed", "stopped"


class ChildJob:
    """What a window job that runs one child process shares (`_proc`, `state`, `poll`):
    launching it, whether it lives, and stopping it: SIGINT first, and `poll` kills it
    `stop_timeout` seconds on (`_overdue`)."""
    _proc: subprocess.Popen | None = None
    _stop_deadline: float | None = None
    stop_timeout: float = 10.0
    state: str = "new"

    def _launch(self, argv: Sequence[str], log_path: str | Path, env: dict | None) -> None:
        """Start the child once (OSError if the program cannot be started)."""
        if self._proc is not None:
            raise RuntimeError("this job was started already")
        self._proc = launch(argv, log_path, env)
        self._started = time.monotonic()
        self.state = RUNNING

    @property
    def alive(self) -> bool:
        """The process has not exited (it may still be writing its last output)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def finished(self) -> bool:
        return self.state in (DONE, FAILED, STOPPED)

    def stop(self, wait: float | None = None) -> None:
        """Ask the child to stop (SIGINT; terminate where there is none). Returns at once
        unless `wait` seconds are given: then it waits that long, kills the process if it
        is still there, and reaps it. Either way `poll` says when it has gone."""
        if not self.alive:
            return
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.stop_timeout
            interrupt(self._proc)
        if wait is not None:
            try:
                self._proc.wait(wait)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self.poll()

    @property
    def stop_requested(self) -> bool:
        return self._stop_deadline is not None

    def _overdue(self) -> bool:
        """Stop was asked and the child ignored SIGINT for longer than stop_timeout."""
        return self._stop_deadline is not None and time.monotonic() > self._stop_deadline
