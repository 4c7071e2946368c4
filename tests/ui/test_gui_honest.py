"""Controls that say what they can do, through real events: Fine edges disabled (with
what to install) when no hq-sam can serve; Tab says "only one candidate"; on the first
click answered by the classic engine, a one-time notice offers SAM 2.1 Hiera-T, downloads
it with the picker's progress and restarts the engines; dismissing it is remembered."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from annotator.ui import first_minute
from annotator.ui.model_dialog import ModelDialog

from gui_helpers import WAIT_MS, click, key, open_window, single_engine_factory, wait_preview


def test_fine_edges_is_disabled_with_what_to_install(qtbot, image_folder, settings_path,
                                                     classic_factory):
    w = open_window(qtbot, image_folder, classic_factory, settings_path)
    box = w.fine_edges
    assert not box.isEnabled() and not box.isChecked()
    tip = box.toolTip()
    assert "hq-sam" in tip and "hq-sam-vit-tiny" in tip and "File ▸ Models" in tip
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton)        # a disabled box stays off
    assert not box.isChecked() and not w.labeler.service.fine_edges


def test_fine_edges_stays_live_when_the_engines_cannot_tell(qtbot, image_folder,
                                                            settings_path):
    from engines.classic.engine import ClassicEngine
    factory = single_engine_factory(ClassicEngine(), "classic")
    w = open_window(qtbot, image_folder, factory, settings_path)
    assert w.fine_edges.isEnabled()
    qtbot.mouseClick(w.fine_edges, Qt.MouseButton.LeftButton)
    assert w.fine_edges.isChecked() and w.labeler.service.fine_edges


def test_tab_says_only_one_candidate(qtbot, image_folder, settings_path, classic_factory):
    w = open_window(qtbot, image_folder, classic_factory, settings_path)
    # the image's own "ready" message would otherwise race with (and replace) Tab's
    qtbot.waitUntil(lambda: w.images.state(w.image_id) == "ready", timeout=WAIT_MS)
    QApplication.processEvents()
    key(qtbot, w, Qt.Key.Key_Tab)
    assert "no candidates to step through" in w.statusBar().currentMessage()
    click(qtbot, w, 55, 45)
    wait_preview(qtbot, w)
    assert len(w.labeler.prompt.prediction.masks) == 1
    key(qtbot, w, Qt.Key.Key_Tab)
    assert "only one candidate" in w.statusBar().currentMessage()
    assert w.labeler.prompt.candidate == 0


def _fake_download(entry, directory, progress=None, **_options) -> Path:
    path = Path(directory) / entry.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really a checkpoint")
    return path


def _window_with_offer(qtbot, image_folder, settings_path, factory, tmp_path, restarts):
    w = open_window(qtbot, image_folder, factory, settings_path)
    w.models_dir = str(tmp_path / "offered")
    w.model_dialog = ModelDialog(w, directory=w.models_dir, download_fn=_fake_download,
                                 reload_engines=lambda: restarts.append(1) or True)
    return w


def test_first_classic_click_offers_sam2_and_downloads_it(qtbot, image_folder, settings_path,
                                                          classic_factory, tmp_path):
    restarts = []
    w = _window_with_offer(qtbot, image_folder, settings_path, classic_factory, tmp_path,
                           restarts)
    offer = w.classic_offer
    assert not offer.visible
    click(qtbot, w, 55, 45)
    wait_preview(qtbot, w)
    qtbot.waitUntil(lambda: offer.visible, timeout=WAIT_MS)
    text = offer.label.text()
    assert "classic" in text and "SAM 2.1 Hiera-Tiny" in text and "156 MB" in text
    assert first_minute.OFFER in offer.download_button.text()
    qtbot.mouseClick(offer.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: restarts == [1], timeout=WAIT_MS)       # engines switched
    qtbot.waitUntil(lambda: not offer.visible, timeout=WAIT_MS)
    assert (tmp_path / "offered" / "sam2.1_hiera_tiny.pt").is_file()
    assert "installed" in w.statusBar().currentMessage()
    click(qtbot, w, 40, 40)                                         # once per window
    wait_preview(qtbot, w)
    assert not offer.visible


def test_dismissed_offer_is_not_shown_again(qtbot, image_folder, settings_path,
                                            classic_factory, tmp_path):
    restarts = []
    w = _window_with_offer(qtbot, image_folder, settings_path, classic_factory, tmp_path,
                           restarts)
    click(qtbot, w, 55, 45)
    wait_preview(qtbot, w)
    qtbot.waitUntil(lambda: w.classic_offer.visible, timeout=WAIT_MS)
    dismiss = [b for b in w.classic_offer.bar.findChildren(type(w.classic_offer.download_button))
               if b.text() == "Dismiss"][0]
    qtbot.mouseClick(dismiss, Qt.MouseButton.LeftButton)
    assert not w.classic_offer.visible and restarts == []
    w.close()
    again = _window_with_offer(qtbot, image_folder, settings_path, classic_factory, tmp_path,
                               restarts)
    click(qtbot, again, 55, 45)
    wait_preview(qtbot, again)
    qtbot.wait(100)
    assert not again.classic_offer.visible
