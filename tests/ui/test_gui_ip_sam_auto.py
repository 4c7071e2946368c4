"""The window's Auto preset choice through the real router: with PMG-SAM's files and
IP-SAM's (a tiny SAM 2 and an ip-sam plugin on it, pinned for ip-sam as the model picker
pins them; the tiny SAM 2 is no official size, so plain sam2 must not load it) installed, plain Auto answers with pmg-sam (salient), and choosing "camouflaged /
medical" then pressing G proposes with ip-sam through the review queue; the choice is
remembered. Without an ip-sam plugin that entry is disabled and says what to install."""
from __future__ import annotations

import pytest
from gui_helpers import WAIT_MS, key, open_window
from ip_sam_helpers import install_ip_sam
from pmg_helpers import install_pmg, patch_tiny_u2net
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QApplication
from review_helpers import scene_folder


def _window(qtbot, tmp_path, settings_path, monkeypatch, *, plugin: bool):
    from annotator.core.session import build_session
    models = tmp_path / "models"
    install_pmg(models)
    ip = install_ip_sam(models, plugin=plugin)
    patch_tiny_u2net(monkeypatch)
    monkeypatch.setenv("ANNOTATOR_MODELS_DIR", str(models))

    pins = {"checkpoints": {"ip-sam": str(ip["sam2"])}, "plugins": {"ip-sam": str(ip["plugin"])}} \
        if plugin else {}

    def factory(on_event):
        return build_session(on_event, models_dir=str(models), device="cpu", cache_mb=64, **pins)
    return open_window(qtbot, scene_folder(tmp_path), factory, settings_path)


@pytest.fixture
def window(qtbot, tmp_path, settings_path, monkeypatch, one_torch_thread):
    w = _window(qtbot, tmp_path, settings_path, monkeypatch, plugin=True)
    yield w
    w.shutdown()


def _propose(qtbot, w, engine: str):
    runs = len(w.project.proposal_runs())
    key(qtbot, w, Qt.Key.Key_G)
    qtbot.waitUntil(lambda: len(w.project.proposal_runs()) > runs
                    or "failed" in w.statusBar().currentMessage(), timeout=WAIT_MS * 4)
    QApplication.processEvents()
    assert w.engine_label.text() == f"engine: {engine}", w.statusBar().currentMessage()
    (run,) = [r for r in w.project.proposal_runs() if r.engine == engine]   # runs: not in time order
    return run


def test_the_camouflaged_preset_proposes_with_ip_sam_through_the_review_queue(qtbot, window, settings_path):
    w = window
    presets = w.review.presets
    assert [presets.itemData(i) for i in range(presets.count())] == ["salient", "camouflaged", "everything"]
    assert presets.preset == "salient" and w.auto_button.isEnabled(), w.auto_button.toolTip()
    enabled = [presets.model().item(i).isEnabled() for i in range(presets.count())]
    assert enabled == [True, True, False]                # no SAM / SAM 2 file for "everything"
    assert _propose(qtbot, w, "pmg-sam").engine == "pmg-sam"
    presets.setCurrentIndex(presets.findData("camouflaged"))
    assert "camouflaged / medical" in w.auto_button.toolTip()
    run = _propose(qtbot, w, "ip-sam")
    assert run.engine == "ip-sam" and run.outcome == "done"
    pending = [c for c in w.project.candidates(w.image_id) if c.engine == "ip-sam"]
    assert pending, "the plugin's map is mostly foreground: at least one component"
    w.review.select(pending[0].id)                   # IP-SAM's best one
    key(qtbot, w, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(w.project.annotations(w.image_id)) == 1, timeout=WAIT_MS)
    ann, = w.project.annotations(w.image_id)
    assert ann.provenance["engine"] == "ip-sam" and "ip.safetensors" in ann.provenance["model"]
    w.settings.sync()
    assert QSettings(str(settings_path), QSettings.Format.IniFormat).value("review/auto_preset") \
        == "camouflaged"


def test_the_camouflaged_entry_is_disabled_without_an_ip_sam_plugin(qtbot, tmp_path, settings_path,
                                                                      monkeypatch, one_torch_thread):
    w = _window(qtbot, tmp_path, settings_path, monkeypatch, plugin=False)
    try:
        presets = w.review.presets
        item = presets.model().item(presets.findData("camouflaged"))
        assert not item.isEnabled()
        tip = presets.itemData(presets.findData("camouflaged"), Qt.ItemDataRole.ToolTipRole)
        assert "Auto: camouflaged / medical needs ip-sam" in tip and "annotator train ip-sam" in tip
        assert presets.model().item(presets.findData("salient")).isEnabled()
        assert not presets.model().item(presets.findData("everything")).isEnabled()  # no SAM
        assert w.auto_button.isEnabled()                 # pmg-sam still answers
    finally:
        w.shutdown()
