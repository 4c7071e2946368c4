"""scripts/sam_mi_experiment_inputs.py: the random CLIP it writes loads as the SAM-MI
experiment's CLIP, its config matches it, the unseen categories' annotations are gone
with every image kept; a missing category is one line and exit status 2, nothing written."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch
from sam_mi_helpers import write_coco

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location(
        "sam_mi_experiment_inputs", ROOT / "scripts" / "sam_mi_experiment_inputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inputs_drop_the_unseen_names_and_fit_the_config(tmp_path, capsys):
    from engines.sam_mi import DenseClip, SamMi, SamMiConfig, tiny_clip
    coco, _ = write_coco(tmp_path / "data")
    full = json.loads(coco.read_text())
    unseen = full["categories"][0]["name"]
    assert _script().main([str(coco), str(tmp_path / "out"), "--unseen", unseen]) == 0
    seen = json.loads(next((tmp_path / "out").glob("seen*.json")).read_text())
    assert [c["name"] for c in seen["categories"]] == [c["name"] for c in full["categories"][1:]]
    assert len(seen["images"]) == len(full["images"])
    assert all(a["category_id"] != full["categories"][0]["id"] for a in seen["annotations"])
    cfg = SamMiConfig.from_dict(json.loads((tmp_path / "out" / "config.json").read_text()))
    clip = tiny_clip(width=64, patch=16, image_size=192, layers=4, embed_dim=64)
    clip.load_state_dict(torch.load(tmp_path / "out" / "clip_small_random.pt"))
    model = SamMi(cfg, DenseClip(clip, cfg.taps))
    assert model.cfg.tokens == 12


def test_an_unknown_category_is_one_line_and_nothing_is_written(tmp_path, capsys):
    coco, _ = write_coco(tmp_path / "data")
    assert _script().main([str(coco), str(tmp_path / "out"), "--unseen", "dragon"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no category dragon" in err[0]
    assert not (tmp_path / "out").exists()
