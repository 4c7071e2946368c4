"""`annotator train sam-mi` on a tiny COCO export and tiny random-weight files, and its
bad input: each one line naming the file or option, exit status 2, nothing written."""
from __future__ import annotations

import json

import pytest
import torch

from annotator.cli import main
from engines.files import read_plugin_metadata
from engines.sam_mi import tiny_clip
from sam_mi_helpers import sam_mi_dataset, LENIENT


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return sam_mi_dataset(tmp_path_factory, "sammi-cli")


def _train(dataset, out, *extra):
    root, sam, clip, data, images = dataset
    return main(["train", "sam-mi", "--data", str(data), "--images", str(images), "--val-fraction", "0.5",
                 "--steps", "1", "--batch-size", "1", "--device", "cpu", "--out", str(out),
                 "--cache-dir", str(root / "cache"), "--backbone", str(sam), *extra])


def test_annotator_train_sam_mi_writes_a_plugin_with_its_vocabulary(dataset, tmp_path, capsys):
    _, _, clip, _, _ = dataset
    code = _train(dataset, tmp_path / "out", "--option", f"clip={clip}", "--option", "stage=2",
                  "--option", f"sam_options={json.dumps(LENIENT)}")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "trained sam-mi: 1 steps" in captured.out and "val miou" in captured.out
    (plugin,) = (tmp_path / "out").glob("*.safetensors")
    record = read_plugin_metadata(plugin)
    assert record["classes_seen"] == ["square", "disc"] and record["stage"] == 2


def test_bad_input_is_one_line_and_exit_2(dataset, tmp_path, capsys):
    root, sam, clip, data, images = dataset
    cases = []
    text_only = {k: v for k, v in tiny_clip().state_dict().items() if not k.startswith("visual.")}
    torch.save(text_only, tmp_path / "text_only.pt")
    cases.append(((f"clip={tmp_path / 'text_only.pt'}",), "text tower only"))
    cases.append(((f"clip={tmp_path / 'none.pt'}",), "none.pt does not exist"))
    cases.append(((f"clip={clip}", "stage=3"), "stage must be 1"))
    cases.append(((f"clip={clip}", "colour=red"), "unknown option(s) colour"))
    for options, message in cases:
        out = tmp_path / f"out{len(options)}{abs(hash(message))}"
        args = [a for o in options for a in ("--option", o)]
        assert _train(dataset, out, *args) == 2, message
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not out.exists()
    # no SAM host: the message names the missing file and what sam-mi needs
    code = main(["train", "sam-mi", "--data", str(data), "--images", str(images), "--steps", "1",
                 "--out", str(tmp_path / "x"), "--backbone", str(tmp_path / "sam_missing.pth"),
                 "--option", f"clip={clip}"])
    err = capsys.readouterr().err
    assert code == 2 and "sam_missing.pth does not exist" in err and "sam_vit_b_01ec64.pth" in err
