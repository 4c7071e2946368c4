"""A screenshot of the text flow for the README, from a real short session.

    .venv/bin/python scripts/screenshots_text.py     # docs/screenshots/08-text-candidates.png

Uses scripts/screenshots.py's Xvfb start and helpers. The engine is the real router's
`sam-mi` in its training-free mode (CLIP similarity -> sparse points -> masks -> SMAgg ->
named instances) on a tiny SAM and a tiny CLIP with RANDOM weights, written to a
temporary models folder. A random SAM answers every point with the same frame-sized blob,
so the masks at SAM-MI's sampled points come from the classic engine (OpenCV GrabCut
around each point) instead; the class each one is named by comes from CLIP's random
features. So the picture shows the UI (the text box with the class names, named dashed
candidates in the review queue, one selected, the pending count), not a model's quality.
Steps, with real key events: open the bundled coffee photo, type the class names into
the text box, Enter, Tab to select a candidate.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from screenshots import WINDOW_SIZE, settle, shoot_main, wait_for

PHOTO = ROOT / "resources" / "samples" / "coffee.png"
CLASSES = "cup, spoon"      # short enough for the toolbar's text box
CLIP_SEED = 1            # which random CLIP: one that names the regions by all three classes
MIN_AREA = 500           # px: GrabCut's slivers where it cannot separate a region are left out


def classic_masks(image):
    """A stand-in for the random SAM's answers at SAM-MI's points (SamPoints._sam_masks'
    signature): the classic engine's region around each point, near-duplicates dropped."""
    import numpy as np
    import torch

    from engines.classic import ClassicEngine
    from engines.types import EngineError, Prompt
    classic = ClassicEngine()
    emb = classic.embed(image)

    def masks_at(_emb, points, _opts, _cancel, grid_index=None):
        masks, scores = [], []
        for x, y in points:
            try:
                pred = classic.predict(emb, Prompt(points=np.array([[x, y]], float),
                                                   labels=np.array([1])))
            except EngineError:         # "cannot separate the object": no mask there
                continue
            m = pred.masks[0]
            if m.sum() >= MIN_AREA and all((m & k).sum() / (m | k).sum() < 0.7 for k in masks):
                masks.append(m)
                scores.append(float(pred.scores[0]))
        if not masks:
            return torch.zeros(0, *image.shape[:2], dtype=torch.bool), torch.zeros(0), len(points)
        return torch.from_numpy(np.stack(masks)), torch.tensor(scores), len(points)
    return masks_at


def tiny_factory(models: Path):
    """A session over the real Router, pinned to a seeded tiny SAM with a tiny CLIP beside
    it (so "text" routes to sam-mi, training-free); its masks from classic_masks."""
    import torch

    from annotator.core.images import load_image
    from annotator.core.session import EngineSession
    from engines.files import EmbeddingCache
    from engines.hosts import tiny_sam
    from engines.router import Router
    from engines.sam_mi import tiny_clip

    models.mkdir(parents=True, exist_ok=True)
    sam = models / "sam_tiny.pth"
    torch.save(tiny_sam(img_size=256, seed=0).state_dict(), sam)
    torch.save(tiny_clip(seed=CLIP_SEED).state_dict(), models / "ViT-B-16.pt")
    router = Router(models_dir=models, device="cpu", checkpoints={"sam": sam})
    engine = router.route("text").engine                  # built once; the router keeps it
    engine._sam_masks = classic_masks(load_image(PHOTO))
    print(f"text engine: {router.route('text').explain()}")
    return lambda on_event: EngineSession(router, EmbeddingCache(memory_mb=256, disk=False),
                                          on_event, device="cpu")


def run_session(out: Path, work: Path) -> Path:
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from annotator.ui.app import run

    folder = work / "photos"
    folder.mkdir()
    (folder / PHOTO.name).write_bytes(PHOTO.read_bytes())
    window = run(str(folder), session_factory=tiny_factory(work / "models"),
                 settings_path=work / "settings.ini", exec_loop=False)
    try:
        window.resize(*WINDOW_SIZE)
        window.move(0, 0)
        window.activateWindow()
        wait_for(window.isVisible, "the window")
        image = window.image_id
        wait_for(lambda: window.images.state(image) == "ready", "the photo embedded")
        field = window.text_field
        field.setFocus()
        QTest.keyClicks(field, CLASSES)
        QTest.keyClick(field, Qt.Key.Key_Return)
        QTest.keyClick(field, Qt.Key.Key_Home)             # the names from their start
        wait_for(lambda: bool(window.project.proposal_runs()), "sam-mi's answer", timeout=120)
        run_, = window.project.proposal_runs()
        if not window.project.candidates(image):
            raise SystemExit(f"screenshots: no candidates ({run_.outcome}: {run_.message})")
        settle(300)
        c = window.canvas
        c.setFocus()
        QTest.keyClick(c, Qt.Key.Key_Tab)                  # select one: its label and handles
        wait_for(lambda: window.review.selected is not None, "a selected candidate")
        labels = sorted({x.label for x in window.project.candidates(image)})
        print(f"{len(window.project.candidates(image))} candidates named {', '.join(labels)}")
        settle(400)
        path = out / "08-text-candidates.png"
        if not window.grab().save(str(path)):
            raise SystemExit(f"screenshots: could not write {path}")
        print(f"saved {path}")
        return path
    finally:
        window.shutdown()
        window.close()


def main(argv=None) -> int:
    return shoot_main(__doc__, run_session, "annotator-text-shots-", argv)


if __name__ == "__main__":
    sys.exit(main())
