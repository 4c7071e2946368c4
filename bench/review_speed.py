"""Benchmark (not a test): review speed in the real window (offscreen Qt, no engine).

The window opens a temporary project on one real photo (dog.jpg from ../shared/data/photos,
2048 x 1365) whose candidates are stored directly: seeded random blobs (ellipses) with
random scores, as a proposer would leave them. Two timings:

- accept all shown: from a real Shift+Enter key event on the canvas to the end of the
  canvas repaint that shows the result (the 100 candidates gone, 100 instances drawn);
  undone (untimed) between repeats. Goal <= 100 ms.
- threshold slider: a slider step to the end of the repaint, 200 candidates shown.
  Goal <= 50 ms at the 95th percentile.

    .venv/bin/python bench/review_speed.py               # ~30 s; prints a markdown table
    .venv/bin/python bench/review_speed.py --no-write    # ... without updating the docs
    from bench.review_speed import measure; measure()     # the numbers, for a report

Writes its section between the review-speed markers of docs/benchmarks.md.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# ../shared/data/photos of the checkout (of the main checkout, for a worktree)
PHOTOS = next((p / "shared" / "data" / "photos" for p in ROOT.parents
               if (p / "shared" / "data" / "photos").is_dir()),
              ROOT.parent / "shared" / "data" / "photos")
PHOTO = PHOTOS / "dog.jpg"
ACCEPT_N, SLIDER_N = 100, 200
ACCEPT_GOAL_MS, SLIDER_GOAL_MS = 100.0, 50.0


def _photo(folder: Path) -> Path:
    """The photo, or (no shared data here) a generated one of the same size."""
    from PIL import Image
    out = folder / "photo.jpg"
    if PHOTO.is_file():
        out.write_bytes(PHOTO.read_bytes())
    else:
        rng = np.random.default_rng(0)
        Image.fromarray(rng.integers(0, 255, (1365, 2048, 3), dtype=np.uint8)).save(out)
    return out


def _blobs(n: int, h: int, w: int, seed: int):
    """n candidates: random ellipses (radius 15..120 px) with scores in [0.3, 1]."""
    import cv2

    from annotator.core.dataset import CandidateRecord
    from annotator.core.geometry import mask_to_rle
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        m = np.zeros((h, w), np.uint8)
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        axes = (int(rng.integers(15, 120)), int(rng.integers(15, 120)))
        cv2.ellipse(m, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        out.append(CandidateRecord(0, 0, mask_to_rle(m.astype(bool)),
                                   float(rng.uniform(0.3, 1.0)), "bench",
                                   provenance={"engine": "bench", "model": "none"}))
    return out


def _repaint(w) -> None:
    from PySide6.QtWidgets import QApplication
    QApplication.processEvents()
    w.canvas.viewport().repaint()


def _stats(values: list[float]) -> dict[str, float]:
    a = np.asarray(values)
    return {"median": float(np.median(a)), "p95": float(np.percentile(a, 95)),
            "max": float(a.max()), "n": len(values)}


def measure(repeats: int = 7, steps: int = 60) -> dict[str, dict[str, float]]:
    """{"accept_all": stats in ms, "slider": stats in ms} (median, p95, max, n)."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from annotator.core.store import Project
    from annotator.ui.main_window import MainWindow
    from annotator.ui.settings import open_settings

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "images").mkdir()
        _photo(tmp / "images")
        project = Project.create(tmp / "p.annot", tmp / "images")
        project.scan_folder()
        image = project.images()[0]
        w = MainWindow(project, None, open_settings(tmp / "settings.ini"))
        w.resize(1280, 860)
        w.show()
        app.processEvents()
        try:
            accept = []
            for r in range(repeats):
                if r == 0:
                    project.add_candidates(image.id, _blobs(ACCEPT_N, image.height,
                                                            image.width, seed=1))
                w._flush()
                _repaint(w)
                assert len(w.canvas.candidates.shown()) == ACCEPT_N
                t0 = time.perf_counter()
                QTest.keyClick(w.canvas, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
                _repaint(w)
                accept.append((time.perf_counter() - t0) * 1000)
                assert len(project.annotations(image.id)) == ACCEPT_N
                assert not w.canvas.candidates.shown()
                w.undo()                                      # untimed: back to 100 pending
                _repaint(w)
            w.undo_action.setEnabled(False)
            project.add_candidates(image.id, _blobs(SLIDER_N - ACCEPT_N, image.height,
                                                    image.width, seed=2))
            w._flush()
            slider = w.review.slider.slider
            slider.setValue(0)
            _repaint(w)
            assert len(w.canvas.candidates.shown()) == SLIDER_N
            rng = np.random.default_rng(3)
            moves = []
            for _ in range(steps):
                value = int(rng.integers(0, 71))     # 0 .. 0.70: most of them stay shown
                t0 = time.perf_counter()
                slider.setValue(value if value != slider.value() else value + 1)
                _repaint(w)
                moves.append((time.perf_counter() - t0) * 1000)
        finally:
            w.shutdown()
            w.deleteLater()
            app.processEvents()
    return {"accept_all": _stats(accept), "slider": _stats(moves)}


def table(result: dict[str, dict[str, float]]) -> str:
    rows = [("accept all shown (Shift+Enter) to painted", ACCEPT_N, result["accept_all"],
             f"median <= {ACCEPT_GOAL_MS:.0f} ms",
             result["accept_all"]["median"] <= ACCEPT_GOAL_MS),
            ("threshold slider step to painted", SLIDER_N, result["slider"],
             f"p95 <= {SLIDER_GOAL_MS:.0f} ms", result["slider"]["p95"] <= SLIDER_GOAL_MS)]
    out = ["| what | candidates | median ms | p95 ms | max ms | runs | goal | met |",
           "|---|---|---|---|---|---|---|---|"]
    for what, n, s, goal, met in rows:
        out.append(f"| {what} | {n} | {s['median']:.1f} | {s['p95']:.1f} | {s['max']:.1f} | "
                   f"{s['n']} | {goal} | {'yes' if met else 'no'} |")
    return "\n".join(out)


def section(result: dict[str, dict[str, float]]) -> str:
    from bench._proc import cpu_header
    source = PHOTO.name if PHOTO.is_file() else "a generated 2048 x 1365 image"
    return (f"## Review speed in the window\n\n{cpu_header()}\n\n"
            f"Offscreen Qt, no engine; {source} with seeded random elliptic candidates "
            "stored directly. Accept all: a real Shift+Enter key event to the end of the "
            "canvas repaint showing the result (undone between repeats). Slider: one step "
            "to the end of the repaint. `bench/review_speed.py`.\n\n" + table(result))


if __name__ == "__main__":
    result = measure()
    print(table(result))
    if "--no-write" not in sys.argv[1:]:
        from bench._docs import write_section
        write_section(ROOT / "docs" / "benchmarks.md", "review-speed", section(result))
