"""The GUI thread never waits for a model, and never shows an answer on the wrong image."""
from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import Qt

from gui_helpers import WAIT_MS, click, key, open_window, wait_preview


@pytest.fixture(params=["classic", "tiny-sam"])
def factory(request):
    return request.getfixturevalue("classic_factory" if request.param == "classic"
                                   else "tiny_sam_factory")


def test_rapid_clicks_and_image_switch_never_show_a_stale_preview(
        qtbot, image_folder, settings_path, factory):
    w = open_window(qtbot, image_folder, factory, settings_path)
    shown: list[tuple] = []      # (canvas image id, labeler image id, mask shape, canvas size)
    real = w.canvas.set_preview

    def spy(mask, color):
        if mask is not None:
            shown.append((w.image_id, w.labeler.image_id, mask.shape, w.canvas.image_size))
        real(mask, color)
    w.canvas.set_preview = spy
    answers: list[tuple] = []
    w.labeler.preview_shown.connect(lambda ev_image, canvas_image:
                                    answers.append((ev_image, canvas_image)))

    for round_ in range(3):
        for i in range(8):                       # rapid clicks, no waiting
            click(qtbot, w, 20 + 10 * i, 30 + 5 * (i % 3))
        key(qtbot, w, Qt.Key.Key_D)              # move on while answers are in flight
        key(qtbot, w, Qt.Key.Key_D)
        assert w.canvas.image_size == (80, 120)  # img2: another size than img0 / img1
        click(qtbot, w, 30, 30)
        wait_preview(qtbot, w)
        qtbot.wait(150)                          # let late events of the old image arrive
        key(qtbot, w, Qt.Key.Key_A)
        key(qtbot, w, Qt.Key.Key_A)
    assert answers, "no preview was ever shown"
    assert all(ev == canvas for ev, canvas in answers), answers
    assert all(img == lab and shape == size for img, lab, shape, size in shown), shown
    w.shutdown()


def test_gui_thread_never_runs_the_engine(qtbot, image_folder, settings_path, tiny_sam_factory):
    calls: list[str] = []

    def factory(on_event):
        session = tiny_sam_factory(on_event)
        engine = session.engines("points", False).engine
        for name in ("embed", "predict"):
            real = getattr(engine, name)

            def wrapped(*args, _real=real, **kwargs):
                calls.append(threading.current_thread().name)
                return _real(*args, **kwargs)
            setattr(engine, name, wrapped)
        return session
    w = open_window(qtbot, image_folder, factory, settings_path)
    t0 = time.perf_counter()
    click(qtbot, w, 55, 45)
    assert time.perf_counter() - t0 < 1.0        # the click returned without waiting
    wait_preview(qtbot, w)
    # the next images are embedded ahead while the user works
    qtbot.waitUntil(lambda: w.images.state(w.images.image_ids[1]) == "ready", timeout=WAIT_MS)
    assert calls and threading.main_thread().name not in calls
    w.shutdown()


def test_answer_queued_before_an_image_switch_is_dropped(qtbot, image_folder, settings_path,
                                                         factory):
    """Deterministic version of the race: the worker has already posted the answer for
    image 1 when the user moves to image 2; the GUI must not show it."""
    posted = threading.Event()

    def spying_factory(on_event):
        def forward(event):
            on_event(event)                      # posts the Qt signal (queued)
            if event.kind == "prediction":
                posted.set()
        return factory(forward)
    w = open_window(qtbot, image_folder, spying_factory, settings_path)
    first = w.image_id
    click(qtbot, w, 55, 45)
    assert posted.wait(WAIT_MS / 1000)           # the answer sits in the Qt queue...
    w.step_image(1)                              # ...while the user moves on (D)
    assert w.image_id != first
    dropped_before = w.labeler.stale_dropped
    qtbot.waitUntil(lambda: w.labeler.stale_dropped > dropped_before, timeout=WAIT_MS)
    assert not w.canvas.preview_shown and w.labeler.prompt.prediction is None
    w.shutdown()
