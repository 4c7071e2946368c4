"""The window with an encoder runtime still to calibrate: it answers clicks meanwhile,
and the status bar shows the background build's progress and which runtime answers."""
from __future__ import annotations

import threading

from gui_helpers import WAIT_MS, click, open_window, single_engine_factory, wait_preview

from engines.hosts import SamEngine, tiny_sam
from engines.runtime import choice


def test_the_status_bar_follows_the_background_runtime_build(qtbot, image_folder, settings_path,
                                                              tmp_path, monkeypatch, one_torch_thread):
    monkeypatch.setenv("ANNOTATOR_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("ANNOTATOR_RUNTIME", "auto")
    monkeypatch.setattr(choice, "offered_runtimes", lambda: ["torch-fp32", "torch-bf16"])
    gate, real = threading.Event(), choice.build_runner

    def held(runtime, *a, **k):
        if runtime == "torch-bf16":
            assert gate.wait(WAIT_MS / 1000)
        return real(runtime, *a, **k)
    monkeypatch.setattr(choice, "build_runner", held)
    engine = SamEngine(tiny_sam(), backbone_key="sam:tiny:gui", device="cpu")
    w = open_window(qtbot, image_folder, single_engine_factory(engine, "sam"), settings_path)
    shown: list[str] = []
    w.statusBar().messageChanged.connect(shown.append)
    try:
        click(qtbot, w, 55, 45)                  # answered while the calibration waits
        wait_preview(qtbot, w)
        assert engine.encoder.needs_calibration and engine.encoder.runtime == "torch-fp32"
    finally:
        gate.set()
    qtbot.waitUntil(lambda: any("the encoder runs" in m for m in shown), timeout=WAIT_MS)
    done = next(m for m in shown if "the encoder runs" in m)
    assert done == f"sam: the encoder runs {engine.encoder.runtime}"
    assert engine.encoder.ready
