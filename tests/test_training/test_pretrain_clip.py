"""training/pretrain_clip.py: a few steps lower the loss on a two-category scene, the file
it writes is an open_clip state dict that SAM-MI's engine loads as its CLIP, and bad
input is one line with exit status 2."""
from __future__ import annotations

import json

import torch
from sam_mi_helpers import write_coco

from training import pretrain_clip


def test_a_short_run_learns_the_two_names_and_saves_a_loadable_clip(tmp_path):
    data, images = write_coco(tmp_path / "data", shifts=(0, 3, 6, 9))
    lines = []
    path = pretrain_clip.pretrain(str(data), str(images), tmp_path / "out", steps=30, batch_size=4,
                                  lr=3e-3, val_fraction=0.0, seed=0, log=lines.append)
    record = json.loads((tmp_path / "out" / "clip.json").read_text())
    first, last = record["loss_first_last"]
    assert record["categories"] == ["disc", "square"] and last < first
    assert record["held_out"] is None                     # --val-fraction 0: nothing held out
    from engines.sam_mi import tiny_clip
    clip = tiny_clip(**pretrain_clip.SMALL)
    assert clip.load_state_dict(torch.load(path)).missing_keys == []
    assert any("2 categories: disc, square" in line for line in lines)


def test_bad_input_is_one_line(tmp_path, capsys):
    data, images = write_coco(tmp_path / "data")
    assert pretrain_clip.main(["--data", str(tmp_path / "none.json"), "--images", str(images),
                               "--out", str(tmp_path / "o1")]) == 2
    assert "none.json" in capsys.readouterr().err
    assert pretrain_clip.main(["--data", str(data), "--images", str(images), "--out",
                               str(tmp_path / "o2"), "--steps", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--steps" in err[0]
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()
