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
