"""One engine's run for bench/click_latency.py, in a fresh process: the real window
offscreen, real mouse / key events, times to the painted frame. Prints one JSON line.

    python bench/_click_worker.py ENGINE FOLDER --clicks N --seed S

ENGINE: classic | vit_b | hiera_t (the SAM ones with random weights, seeded).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TIMEOUT_MS = 120_000


def session_factory(engine_name: str, work: Path):
    """on_event -> EngineSession: the classic engine through the real Router (empty
    models folder), or a full-size SAM architecture with random weights."""
    from annotator.core.session import EngineSession
    from engines.files import EmbeddingCache
    from engines.router import NOT_INSTALLED_HINT, Routed, Router
    from engines.types import EngineError

    if engine_name == "classic":
        models = work / "models"
        models.mkdir()
        return lambda on_event: EngineSession(Router(models_dir=models, device="cpu"),
                                              EmbeddingCache(memory_mb=1024, disk=False),
                                              on_event, device="cpu")
    import torch
    torch.manual_seed(0)
    if engine_name == "vit_b":
        from engines.hosts import SamEngine, build_sam_architecture
        engine, name = SamEngine(build_sam_architecture("vit_b"), backbone_key="bench-vit_b",
                                 device="cpu"), "sam"
    elif engine_name == "hiera_t":
        from engines.hosts import Sam2Engine, build_sam2_architecture
        engine, name = Sam2Engine(build_sam2_architecture("hiera_t"),
                                  backbone_key="bench-hiera_t", device="cpu"), "sam2"
    else:
        raise SystemExit(f"unknown engine {engine_name!r}: classic, vit_b or hiera_t")

    def resolve(task, fine_edges):
        if task in NOT_INSTALLED_HINT:
            raise EngineError(NOT_INSTALLED_HINT[task])
        return Routed(engine, name, None)
    return lambda on_event: EngineSession(resolve, EmbeddingCache(memory_mb=1024, disk=False),
                                          on_event, device="cpu")


class Probe:
    """Times from an input event to the first canvas frame painted with its result.

    The canvas' `drawForeground` runs inside its paint, after every item (the preview
    included) is drawn: the end of that call is "the preview is painted"."""

    def __init__(self, window):
        from PySide6.QtCore import QEventLoop, QTimer
        self.w = window
        self.loop = QEventLoop()
        self.timer = QTimer()
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self.loop.quit)
        self.done_when = None          # () -> bool, checked after each canvas paint
        self.t_done: float | None = None
        self.ready_at: dict[int, float] = {}
        canvas = window.canvas
        real = canvas.drawForeground

        def draw_foreground(painter, rect):
            real(painter, rect)
            if self.done_when is not None and self.t_done is None and self.done_when():
                self.t_done = time.perf_counter()
                self.loop.quit()
        canvas.drawForeground = draw_foreground
        window.labeler.embedding_state.connect(self._state)

    def _state(self, image_id, state, _detail) -> None:
        if state == "ready":
            self.ready_at.setdefault(image_id, time.perf_counter())

    def run_until(self, condition, what: str) -> float:
        """Run the event loop until a canvas paint sees `condition()`; its time."""
        self.done_when, self.t_done = condition, None
        self.timer.start(TIMEOUT_MS)
        if self.t_done is None:
            self.loop.exec()
        self.timer.stop()
        self.done_when = None
        if self.t_done is None:
            raise SystemExit(f"timed out waiting for {what}")
        return self.t_done

    def wait(self, condition, what: str, timeout_s: float = TIMEOUT_MS / 1000) -> None:
        from PySide6.QtCore import QEventLoop
        from PySide6.QtWidgets import QApplication
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            QApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.005)


def click_event(viewport, pos, press: bool):
    from PySide6.QtCore import QEvent, QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    local = QPointF(pos)
    kind = QEvent.Type.MouseButtonPress if press else QEvent.Type.MouseButtonRelease
    buttons = Qt.MouseButton.LeftButton if press else Qt.MouseButton.NoButton
    return QMouseEvent(kind, local, QPointF(viewport.mapToGlobal(pos)),
                       Qt.MouseButton.LeftButton, buttons, Qt.KeyboardModifier.NoModifier)


def time_clicks(probe: Probe, points, label: str) -> list[dict]:
    """One fresh single click per point: event sent -> preview painted."""
    from PySide6.QtWidgets import QApplication
    w, out = probe.w, []
    viewport = w.canvas.viewport()
    for x, y in points:
        w.labeler.clear()
        QApplication.processEvents()
        prefetching = bool(w.labeler.service.prefetching)
        pos = w.canvas.image_to_view(x, y)
        answers: list[tuple[str, float, float]] = []
        p = w.labeler.prompt

        def on_answer(engine, _explain, ms):
            answers.append((engine, ms, time.perf_counter()))
            if p.mask is not None and not p.mask.any() and probe.t_done is None:
                probe.t_done = answers[-1][2]    # empty: no preview, nothing to repaint
                probe.loop.quit()
        conn = w.labeler.answered.connect(on_answer)
        t0 = time.perf_counter()
        QApplication.sendEvent(viewport, click_event(viewport, pos, True))
        QApplication.sendEvent(viewport, click_event(viewport, pos, False))

        def answered_and_drawn():
            return p.prediction is not None and p.pending is None and w.canvas.preview_shown
        if p.pending is None:
            raise SystemExit(f"the click at ({x:.0f}, {y:.0f}) sent no request")
        t1 = probe.run_until(answered_and_drawn, "the preview")
        w.labeler.answered.disconnect(conn)
        out.append({"phase": label, "ms": (t1 - t0) * 1000.0,
                    "engine_ms": answers[-1][1] if answers else None,
                    "empty": bool(not p.mask.any()), "prefetching": prefetching})
    return out


def time_switches(probe: Probe, steps) -> list[dict]:
    """Key D / A to an image already embedded (prefetched): key sent -> the new image is
    painted and its "ready" event has arrived (clicks are then answered from the cache)."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    w, images, out = probe.w, probe.w.images, []
    for step in steps:
        target = images.neighbour(w.image_id, step)
        probe.wait(lambda: images.state(target) == "ready", f"image {target} prefetched")
        probe.ready_at.pop(target, None)
        key = Qt.Key.Key_D if step > 0 else Qt.Key.Key_A
        t0 = time.perf_counter()
        QTest.keyClick(w.canvas, key)
        t_paint = probe.run_until(lambda: w.image_id == target, "the new image painted")
        probe.wait(lambda: target in probe.ready_at, "the ready event")
        t_ready = probe.ready_at[target]
        out.append({"image_id": target, "painted_ms": (t_paint - t0) * 1000.0,
                    "ready_ms": (t_ready - t0) * 1000.0,
                    "ms": (max(t_paint, t_ready) - t0) * 1000.0})
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("engine")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np
    from engines.runtime import tune_allocator
    tune_allocator()             # as `annotator gui` does, before any model allocates
    import torch
    from PySide6.QtWidgets import QApplication

    from annotator.ui.app import run

    app = QApplication.instance() or QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory(prefix="click-bench-") as tmp:
        work = Path(tmp)
        os.environ["ANNOTATOR_DATA_DIR"] = str(work / "data")
        t_build = time.perf_counter()
        factory = session_factory(args.engine, work)
        build_s = time.perf_counter() - t_build
        window = run(str(args.folder), session_factory=factory,
                     settings_path=work / "settings.ini", exec_loop=False)
        try:
            window.resize(1280, 800)
            probe = Probe(window)
            first = window.image_id
            t0 = time.perf_counter()
            probe.wait(lambda: window.images.state(first) == "ready", "the first embedding")
            embed_s = time.perf_counter() - t0
            h, w = window.canvas.image_size
            rng = np.random.default_rng(args.seed)
            points = [(float(rng.uniform(0.1, 0.9) * w), float(rng.uniform(0.1, 0.9) * h))
                      for _ in range(args.clicks)]
            # while the next images are embedded ahead (the background worker pauses
            # between encoder blocks for each click)
            busy = time_clicks(probe, points[: max(5, args.clicks // 3)], "prefetch running")
            ids = window.images.image_ids
            probe.wait(lambda: all(window.images.state(i) == "ready" for i in ids),
                       "every image prefetched", timeout_s=600)
            idle = time_clicks(probe, points, "idle")
            switches = time_switches(probe, [1] * (len(ids) - 1) + [-1] * (len(ids) - 1))
        finally:
            window.shutdown()
            window.close()
    app.processEvents()
    print(json.dumps({"engine": args.engine, "build_s": build_s, "first_embed_s": embed_s,
                      "image_size": [int(w), int(h)], "torch": torch.__version__,
                      "torch_threads": torch.get_num_threads(), "clicks": busy + idle,
                      "switches": switches}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
