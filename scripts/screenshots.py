"""Screenshots of the annotation window for the README, from a real short session.

    .venv/bin/python scripts/screenshots.py            # writes docs/screenshots/*.png

Starts Xvfb when no display is set (`Xvfb :99 -screen 0 1400x900x24 -nolisten tcp`; the
Makefile's system-deps step installs it), opens the bundled sample photos in the real
window (`annotator gui`'s session factory with the classic engine: an empty models folder,
a temporary project and settings), then drives it with real mouse and key events: a click
on the coffee cup and its preview (with the one-time offer of SAM 2.1), accepting it as class "cup", boxes around the cat's eyes
(accepted as "eye") and its nose (left as a preview) on another image, and the instance
list; boxes around the rocket, its towers and its pad accepted as three classes (the
mask colours) and the brush circle on the rocket; then Help ▸ Keyboard shortcuts and,
after File ▸ Close project, the start page.
Each step's window is saved with `QWidget.grab()`.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

XVFB_SCREEN = "1400x900x24"
WINDOW_SIZE = (1280, 800)
WAIT_S = 30.0


def start_xvfb() -> subprocess.Popen | None:
    """Start Xvfb on a free display and point DISPLAY at it (None: a display is set)."""
    if os.environ.get("DISPLAY"):
        return None
    if shutil.which("Xvfb") is None:
        sys.exit("screenshots: no DISPLAY and no Xvfb; install it (make system-deps, or "
                 "apt-get install xvfb)")
    for number in range(99, 120):
        if Path(f"/tmp/.X11-unix/X{number}").exists() or Path(f"/tmp/.X{number}-lock").exists():
            continue
        log = tempfile.TemporaryFile()      # not a pipe: nobody reads it while it runs
        proc = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", XVFB_SCREEN,
                                 "-nolisten", "tcp"], stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            if Path(f"/tmp/.X11-unix/X{number}").exists():
                os.environ["DISPLAY"] = f":{number}"
                return proc
            time.sleep(0.05)
        proc.kill()
        proc.wait(5)
        log.seek(0)
        err = log.read().decode(errors="replace")
        sys.exit(f"screenshots: Xvfb :{number} did not start: {err.strip() or 'timeout'}")
    sys.exit("screenshots: no free X display number between :99 and :119")


def wait_for(condition, what: str, timeout: float = WAIT_S) -> None:
    from PySide6.QtWidgets import QApplication
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: timed out waiting for {what}")
        QApplication.processEvents()
        time.sleep(0.01)


def shoot_main(doc: str, run_session, prefix: str, argv=None) -> int:
    """The main of a screenshot script whose `run_session(out, work)` needs only a scratch
    folder: --out, Xvfb when there is no screen, one QApplication."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    xvfb = start_xvfb()
    if xvfb is not None:
        os.environ["QT_QPA_PLATFORM"] = "xcb"
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            from PySide6.QtWidgets import QApplication
            app = QApplication.instance() or QApplication(sys.argv[:1])
            run_session(args.out, Path(tmp))
            app.processEvents()
        return 0
    finally:
        if xvfb is not None:
            xvfb.terminate()


def settle(ms: int = 300) -> None:
    """Let queued events and repaints run."""
    from PySide6.QtWidgets import QApplication
    end = time.monotonic() + ms / 1000
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


class Session:
    """Drives the window with real input events, in image coordinates."""

    def __init__(self, window, out: Path):
        self.w = window
        self.out = out
        self.saved: list[Path] = []

    def open(self, file_name: str) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest
        images = self.w.images
        for i in range(images.topLevelItemCount()):
            row = images.topLevelItem(i)
            if row.text(0) == file_name:
                rect = images.visualItemRect(row)
                QTest.mouseClick(images.viewport(), Qt.MouseButton.LeftButton,
                                 Qt.KeyboardModifier.NoModifier, rect.center())
                wait_for(lambda: self.w.windowTitle().find(file_name) >= 0, f"{file_name} shown")
                wait_for(lambda: images.state(self.w.image_id) == "ready",
                         f"{file_name} ready for clicks")
                return
        raise SystemExit(f"screenshots: {file_name} is not in the image list")

    def click(self, x: float, y: float) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest
        c = self.w.canvas
        QTest.mouseClick(c.viewport(), Qt.MouseButton.LeftButton,
                         Qt.KeyboardModifier.NoModifier, c.image_to_view(x, y))
        self.wait_preview()

    def drag(self, x0: float, y0: float, x1: float, y1: float) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest
        c = self.w.canvas
        v = c.viewport()
        a, b = c.image_to_view(x0, y0), c.image_to_view(x1, y1)
        QTest.mousePress(v, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
        for t in (0.25, 0.5, 0.75, 1.0):
            QTest.mouseMove(v, a + (b - a) * t)
        QTest.mouseRelease(v, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
        self.wait_preview()

    def key(self, k) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest
        QTest.keyClick(self.w.canvas, k, Qt.KeyboardModifier.NoModifier)
        settle(200)

    def wait_preview(self) -> None:
        p = self.w.labeler.prompt
        wait_for(lambda: p.mask is not None and p.pending is None, "the engine's answer")
        if not p.mask.any():
            raise SystemExit("screenshots: the engine found no object at the prompt")
        wait_for(lambda: self.w.canvas.preview_shown, "the preview")
        settle()

    def shot_of(self, widget, name: str) -> Path:
        """Save another top-level widget (a dialog, the start window)."""
        path = self.out / name
        if not widget.grab().save(str(path)):
            raise SystemExit(f"screenshots: could not write {path}")
        self.saved.append(path)
        print(f"saved {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        return path

    def shot(self, name: str) -> Path:
        settle()
        path = self.out / name
        if not self.w.grab().save(str(path)):
            raise SystemExit(f"screenshots: could not write {path}")
        self.saved.append(path)
        print(f"saved {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        return path


def run_session(out: Path, work: Path) -> list[Path]:
    from PySide6.QtCore import Qt

    from annotator.commands.gui import session_factory
    from annotator.ui.app import run, samples_folder

    models = work / "models"          # empty: the classic engine answers every click
    models.mkdir()
    window = run(str(samples_folder()), session_factory=session_factory(str(models), "cpu"),
                 settings_path=work / "settings.ini", exec_loop=False)
    try:
        window.resize(*WINDOW_SIZE)
        window.move(0, 0)
        window.activateWindow()
        wait_for(window.isVisible, "the window")
        s = Session(window, out)

        s.open("coffee.png")
        window.canvas.setFocus()
        cup = window.add_class("cup")
        if cup is None:
            raise SystemExit("screenshots: could not add the class 'cup'")
        s.click(290, 150)                                   # the coffee cup
        s.shot("01-click-preview.png")                      # with the offer of SAM 2.1
        window.classic_offer.close()                        # the other shots without it
        s.key(Qt.Key.Key_Return)                            # accept as "cup"
        wait_for(lambda: bool(window.canvas.instance_ids), "the accepted instance")
        s.shot("02-accepted-instance.png")

        s.open("chelsea.png")
        window.canvas.setFocus()
        for name in ("eye", "nose"):
            if window.add_class(name) is None:
                raise SystemExit(f"screenshots: could not add the class {name!r}")
        window.classes.pick_index(1)                        # "eye"
        for box in ((125, 78, 225, 162), (285, 102, 352, 170)):   # a box around each eye
            s.drag(*box)
            s.key(Qt.Key.Key_Return)
        wait_for(lambda: len(window.canvas.instance_ids) == 2, "the two eye instances")
        s.key(Qt.Key.Key_3)                                 # class 3, "nose" ...
        s.drag(230, 215, 300, 275)                          # ... its box, left as a preview
        window.instances.select(window.canvas.instance_ids[1:2])
        s.shot("03-box-and-instances.png")

        s.open("rocket.jpg")                                # several instances, new colours
        window.canvas.setFocus()
        for name, boxes in (("rocket", [(300, 122, 345, 408)]),
                            ("tower", [(162, 118, 212, 410), (432, 118, 474, 420)]),
                            ("pad", [(262, 400, 382, 427)])):
            if window.add_class(name) is None:
                raise SystemExit(f"screenshots: could not add the class {name!r}")
            for box in boxes:
                s.drag(*box)
                s.key(Qt.Key.Key_Return)
        wait_for(lambda: len(window.canvas.instance_ids) == 4, "the four rocket instances")
        window.instances.select([])
        s.shot("06-photo-instances.png")
        from PySide6.QtTest import QTest
        window.instances.select(window.canvas.instance_ids[:1])     # the rocket: the brush
        s.key(Qt.Key.Key_B)
        for _ in range(4):
            s.key(Qt.Key.Key_BracketRight)
        QTest.mouseMove(window.canvas.viewport(), window.canvas.image_to_view(352, 260))
        settle()
        s.shot("07-brush-circle.png")
        s.key(Qt.Key.Key_Escape)

        from annotator.ui.shortcuts import show_shortcuts     # Help > Keyboard shortcuts (F1)
        sheet = show_shortcuts(window)
        sheet.resize(760, 680)
        settle()
        s.shot_of(sheet, "04-shortcut-sheet.png")
        sheet.close()
        window.opener.close_project()                       # File > Close project: start page
        start = window.opener.window
        start.resize(*WINDOW_SIZE)
        start.start_page.set_message("")
        settle()
        s.shot_of(start, "05-start-page.png")
        return s.saved
    finally:
        window.shutdown()
        window.close()
        opener = getattr(window, "opener", None)
        if opener is not None and opener.window is not None:
            opener.window.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots",
                        help="folder for the PNGs (default: docs/screenshots)")
    args = parser.parse_args(argv)
    xvfb = start_xvfb()
    if xvfb is not None:
        os.environ["QT_QPA_PLATFORM"] = "xcb"
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="annotator-shots-") as tmp:
            work = Path(tmp)
            os.environ["ANNOTATOR_DATA_DIR"] = str(work / "data")   # the samples' project
            from PySide6.QtWidgets import QApplication
            app = QApplication.instance() or QApplication(sys.argv[:1])
            saved = run_session(args.out, work)
            app.processEvents()
        print(f"{len(saved)} screenshots in {args.out}")
        return 0
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(5)


if __name__ == "__main__":
    sys.exit(main())
