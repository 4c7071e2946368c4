"""Huge images: engines get a reduced copy and answer in full-image pixels, and peak
memory stays within 2.5x the decoded image (at most two full-size copies)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from annotator.core.engine_image import ENGINE_MAX_SIDE, check_copy_is_enough
from engines.types import EngineError, Prompt

REPO = Path(__file__).resolve().parents[2]
GOAL = 2.5     # peak memory / decoded size (docs/benchmarks.md, "Huge images")

needs_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(),
                                reason="peak memory is read from /proc/self/status")


def _photo(path: Path, w: int, h: int) -> Path:
    """A gradient with a dark disc in the middle (something for the engine to find)."""
    image = np.empty((h, w, 3), np.uint8)
    image[:] = np.linspace(90, 230, w, dtype=np.float32).astype(np.uint8)[None, :, None]
    cv2.circle(image, (w // 2, h // 2), min(w, h) // 5, (40, 30, 20), -1)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return path


def _peak_above_start_mib(setup: str, work: str) -> float:
    """Peak RSS (VmHWM) of a fresh process running `work`, minus its RSS after `setup`."""
    script = textwrap.dedent(f"""
        import json, sys
        def status(key):
            for line in open("/proc/self/status"):
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
        {setup}
        start = status("VmRSS")
        {work}
        print(json.dumps(status("VmHWM") - start))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_proc
@pytest.mark.slow
def test_full_size_load_holds_at_most_two_copies(tmp_path):
    side = 8000
    path = _photo(tmp_path / "big.png", side, side)
    decoded_mib = side * side * 3 / 2**20
    above = _peak_above_start_mib("from annotator.core.images import load_image",
                                  f"load_image({str(path)!r})")
    # Pillow's RGB (4 bytes a pixel) + the numpy result (3) = 2.33x; it was 3.3x
    assert above / decoded_mib <= GOAL, f"{above:.0f} MiB = {above / decoded_mib:.2f}x"


@needs_proc
@pytest.mark.slow
def test_segment_command_on_a_huge_png_stays_within_the_goal(tmp_path):
    side = 6000
    big, small = _photo(tmp_path / "big.png", side, side), _photo(tmp_path / "s.png", 64, 64)
    setup = "from annotator.cli import main"

    def run(path: Path, x: int) -> float:
        return _peak_above_start_mib(setup, (
            f"main(['segment', {str(path)!r}, '--point', '{x},{x}', '--engine', 'classic', "
            f"'--no-cache', '--out', {str(tmp_path / 'm.png')!r}])"))

    # the router, torch and friends cost the same for any image: the tiny run measures it
    baseline = run(small, 32)
    image_part = run(big, side // 2) - baseline
    decoded_mib = side * side * 3 / 2**20
    assert image_part / decoded_mib <= GOAL, f"{image_part:.0f} MiB = {image_part / decoded_mib:.2f}x"
    with Image.open(tmp_path / "m.png") as mask:
        assert mask.size == (side, side)


class _Recording:
    """The classic engine, remembering the shape of every image it was given."""

    def __init__(self):
        from engines.classic import ClassicEngine
        self.inner, self.seen = ClassicEngine(), []
        self.name, self.backbone_key, self.max_side = "classic", "classic:v1", 640

    def embed(self, image):
        self.seen.append(image.shape)
        return self.inner.embed(image)

    def predict(self, emb, prompt):
        return self.inner.predict(emb, prompt)


def test_service_gives_engines_a_reduced_copy_and_answers_in_full_pixels(tmp_path):
    from annotator.core.service import EngineService
    from engines.files import EmbeddingCache
    w, h = 3000, 2200
    path = _photo(tmp_path / "wide.png", w, h)
    engine, answers, done = _Recording(), [], threading.Event()

    class Routed:
        name = "classic"

    Routed.engine = engine

    def on_event(event):
        if event.kind in ("prediction", "prediction_failed", "dropped"):
            answers.append(event)
            done.set()

    with EngineService(lambda task, fine: Routed(), EmbeddingCache(memory_mb=64, disk=False),
                       on_event) as service:
        service.set_image(1, path)
        service.predict(1, Prompt(points=np.array([[w / 2, h / 2]], np.float32),
                                  labels=np.array([1], np.int32)))
        assert done.wait(60)
    assert answers[0].kind == "prediction", answers[0]
    assert engine.seen == [(round(h * ENGINE_MAX_SIDE / w), ENGINE_MAX_SIDE, 3)]
    mask = answers[0].prediction.masks[0]
    assert mask.shape == (h, w)
    assert mask[h // 2, w // 2] and not mask[10, 10]     # the disc, in full-size pixels


def test_segment_command_gives_the_engine_a_reduced_copy(tmp_path, monkeypatch):
    from annotator.cli import main
    from engines.classic import ClassicEngine
    seen = []
    embed = ClassicEngine.embed
    monkeypatch.setattr(ClassicEngine, "embed",
                        lambda self, image: seen.append(image.shape) or embed(self, image))
    w, h = 2600, 3100
    path = _photo(tmp_path / "tall.png", w, h)
    out = tmp_path / "m.png"
    assert main(["segment", str(path), "--point", f"{w // 2},{h // 2}", "--engine", "classic",
                 "--no-cache", "--out", str(out), "--overlay", str(tmp_path / "o.png")]) == 0
    assert seen == [(ENGINE_MAX_SIDE, round(w * ENGINE_MAX_SIDE / h), 3)]
    mask = np.asarray(Image.open(out))
    assert mask.shape == (h, w) and mask[h // 2, w // 2] == 255 and mask[5, 5] == 0
    assert Image.open(tmp_path / "o.png").size == (w, h)


def test_an_engine_wanting_more_than_the_copy_is_refused():
    check_copy_is_enough(1024, (2048, 1500), (20000, 14648))     # fits
    check_copy_is_enough(4096, (900, 800), (900, 800))           # not reduced: all there is
    with pytest.raises(EngineError, match="ENGINE_MAX_SIDE"):
        check_copy_is_enough(4096, (2048, 1500), (20000, 14648))
