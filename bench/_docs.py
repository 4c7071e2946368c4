"""Writing one benchmark's section into docs/benchmarks.md without touching the others."""
from __future__ import annotations

import os
from pathlib import Path


def write_section(path: Path, name: str, body: str) -> None:
    """Replace the text between `<!-- NAME:start -->` and `<!-- NAME:end -->` (appending the
    markers if absent). The file is re-read right before writing and replaced atomically,
    so another benchmark's section is never overwritten."""
    start_mark, end_mark = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    block = f"{start_mark}\n{body.rstrip()}\n{end_mark}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start, end = text.find(start_mark), text.find(end_mark)
    if start != -1 and end > start:
        text = text[:start] + block + text[end + len(end_mark):]
    elif start == -1 and end == -1:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        raise SystemExit(f"{path}: the markers {start_mark} / {end_mark} are broken (one "
                         "missing or out of order); fix the file by hand, nothing was written")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
