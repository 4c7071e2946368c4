"""The model picker's Used column for sam-mi: its CLIP file is used whichever way the
engine runs, and a SAM-MI plugin paired with an installed host is marked as the one the
router loads (before, the CLIP file took the "automatic" slot and hid the plugin)."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from annotator.ui.model_choice import PLUGIN_COLUMNS, ModelChoicePanel


def _status(engine: str, name: str, path: Path):
    return SimpleNamespace(entry=SimpleNamespace(engine=engine, name=name), path=path,
                           in_use=True, installed=True)


def _plugin(path: Path):
    return SimpleNamespace(path=path, engine="sam-mi", backbone_arch="sam:vit_b",
                           created="2026-12-02T10:00:00", metrics={})


def _used_column(panel) -> list[str]:
    col = PLUGIN_COLUMNS.index("Used")
    return [panel.table.item(r, col).text() for r in range(panel.table.rowCount())]


def test_a_paired_sam_mi_plugin_is_used_and_the_clip_file_too(qtbot, tmp_path):
    sam, clip = tmp_path / "sam_vit_b.pth", tmp_path / "ViT-B-16.pt"
    paired, unpaired = tmp_path / "p1.safetensors", tmp_path / "p2.safetensors"
    plugins = [(_plugin(paired), sam), (_plugin(unpaired), None)]
    panel = ModelChoicePanel(list_plugins=lambda folder, pins: plugins)
    qtbot.addWidget(panel)
    used = panel.refresh([_status("sam", "sam-vit-b", sam), _status("sam-mi", "clip-vit-b16", clip)],
                         tmp_path)
    assert used[clip] == "yes" and used[sam] == "yes"
    assert used[paired] == "yes" and unpaired not in used
    assert panel.auto["sam-mi"] == paired.name
    assert _used_column(panel) == ["yes", ""]


def test_without_a_paired_plugin_only_the_clip_file_is_used(qtbot, tmp_path):
    clip = tmp_path / "ViT-B-16.pt"
    panel = ModelChoicePanel(list_plugins=lambda folder, pins: [(_plugin(tmp_path / "p.safetensors"), None)])
    qtbot.addWidget(panel)
    used = panel.refresh([_status("sam-mi", "clip-vit-b16", clip)], tmp_path)
    assert used == {clip: "yes"} and "sam-mi" not in panel.auto
