"""Screenshots of the review queue for the README, from a real short session.

    .venv/bin/python scripts/screenshots_review.py   # docs/screenshots/auto_candidates.png,
                                                     # docs/screenshots/autolabel_dialog.png

Uses scripts/screenshots.py's Xvfb start and event helpers. The proposer is a tiny SAM 2
"segment everything" (sam2-amg) with RANDOM weights, so its candidates are blobs, not
objects: the pictures show the review UI (dashed candidates with their scores, one
selected, the threshold slider, pending counts), not a model's quality. Steps, with real
key and mouse events: open a photo from ../shared/data/photos, press G (Auto), raise the
threshold a little, click a candidate; then File ▸ Auto-label images… over the three
photos (one of them unreadable on purpose, to show how a failure is reported).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from screenshots import WINDOW_SIZE, settle, shoot_main, wait_for  # noqa: E402

# ../shared/data/photos of the checkout (of the main checkout, for a worktree)
PHOTOS = next((p / "shared" / "data" / "photos" for p in ROOT.parents
               if (p / "shared" / "data" / "photos").is_dir()),
              ROOT.parent / "shared" / "data" / "photos")
FILES = ("dog.jpg", "cars.jpg", "example5.png")
# loose filters and one layer of crops: random weights then give a handful of blobs of
# several sizes (without crops, mostly one frame-filling blob)
LOOSE = {"points_per_side": 8, "points_per_batch": 64, "pred_iou_thresh": 0.0,
         "stability_score_thresh": 0.0, "box_nms_thresh": 0.7, "crop_n_layers": 1}


def tiny_factory():
    """A session whose Auto is a seeded random-weight tiny SAM 2 AMG (clicks: its host)."""
    from annotator.core.session import EngineSession
    from engines.files import EmbeddingCache
    from engines.hosts import Sam2Engine, tiny_sam2
    from engines.router import NOT_INSTALLED_HINT, Routed
    from engines.sam_amg import AmgOptions, Sam2AmgEngine
    from engines.types import EngineError

    host = Sam2Engine(tiny_sam2(seed=0), backbone_key="sam2:tiny:random", device="cpu")
    amg = Sam2AmgEngine(host, defaults=AmgOptions.for_host("sam2").updated(LOOSE))

    def resolve(task, fine_edges):
        if task == "auto":
            return Routed(amg, amg.name, None)
        if task in NOT_INSTALLED_HINT:
            raise EngineError(NOT_INSTALLED_HINT[task])
        return Routed(host, "sam2", None)

    return lambda on_event: EngineSession(resolve, EmbeddingCache(memory_mb=256, disk=False),
                                          on_event, device="cpu")


def shoot(widget, path: Path) -> None:
    settle(400)
    if not widget.grab().save(str(path)):
        raise SystemExit(f"screenshots: could not write {path}")
    print(f"saved {path}")


def run_session(out: Path, work: Path) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from annotator.ui.app import run

    folder = work / "photos"
    folder.mkdir()
    for name in FILES:
        shutil.copy(PHOTOS / name, folder / name)
    window = run(str(folder), session_factory=tiny_factory(),
                 settings_path=work / "settings.ini", exec_loop=False)
    try:
        window.resize(*WINDOW_SIZE)
        window.move(0, 0)
        window.activateWindow()
        wait_for(window.isVisible, "the window")
        first = next(i.id for i in window.project.images() if i.file_name == FILES[0])
        window.show_image(first)
        wait_for(lambda: window.images.state(first) == "ready", "the photo embedded")
        c = window.canvas
        c.setFocus()
        QTest.keyClick(c, Qt.Key.Key_G)                               # Auto
        wait_for(lambda: bool(window.project.candidates(first)), "Auto's candidates")
        settle(300)
        scores = sorted(x.score for x in window.project.candidates(first))
        window.review.slider.set_value(scores[1])                     # hide the weakest one
        layer = c.candidates

        def click_on(entry):
            """Click the deepest pixel of `entry` that selects it (not a smaller one)."""
            import cv2
            import numpy as np
            m = np.pad(entry.shape.crop.mask, 1).astype(np.uint8)
            depth = cv2.distanceTransform(m, cv2.DIST_L2, 3)[1:-1, 1:-1]
            for flat in np.argsort(-depth, axis=None)[:20000]:
                y, x = np.unravel_index(flat, depth.shape)
                px, py = entry.shape.x0 + x + 0.5, entry.shape.y0 + y + 0.5
                if layer.hit(px, py) == entry.id:
                    break
            QTest.mouseClick(c.viewport(), Qt.MouseButton.LeftButton,
                             Qt.KeyboardModifier.NoModifier, c.image_to_view(px, py))
            wait_for(lambda: window.review.selected == entry.id, "a selected candidate")

        shown = sorted(layer.shown(), key=lambda e: e.shape.area)
        if shown[-1].shape.area > 0.5 * c.image_size[0] * c.image_size[1]:
            QTest.keyClick(c, Qt.Key.Key_Escape)
            click_on(shown[-1])                       # a frame-filling blob: reject it
            QTest.keyClick(c, Qt.Key.Key_Delete)
            shown = shown[:-1]
        QTest.keyClick(c, Qt.Key.Key_Escape)
        # select the simplest-outlined one that is not tiny: random weights give dotted
        # grids, whose hundreds of vertex handles would hide the selected style
        big = [e for e in shown if e.shape.area >= 400] or shown
        click_on(min(big, key=lambda e: e.shape.path.elementCount()))
        shoot(window, out / "auto_candidates.png")

        (folder / FILES[1]).write_bytes(b"truncated")               # fails in the batch
        QTest.keyClick(c, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier
                       | Qt.KeyboardModifier.ShiftModifier)       # File > Auto-label images…
        dialog = window.autolabel_dialog
        wait_for(lambda: dialog is not None and dialog.isVisible(), "the dialog")
        dialog.move(window.x() + 200, window.y() + 120)
        QTest.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
        wait_for(lambda: dialog.summary is not None and not dialog.running, "the batch",
                 timeout=300)
        shoot(dialog, out / "autolabel_dialog.png")
    finally:
        window.shutdown()
        window.close()


def main(argv=None) -> int:
    return shoot_main(__doc__, run_session, "annotator-review-shots-", argv)


if __name__ == "__main__":
    sys.exit(main())
