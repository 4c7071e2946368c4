"""`annotator segment` end to end: the run command's job, with and without a checkpoint."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from annotator.cli import main
from engines.files import catalogue

REPO = Path(__file__).resolve().parents[2]
COFFEE = REPO / "resources" / "samples" / "coffee.png"


def test_segment_with_classic_engine(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ANNOTATOR_MODELS_DIR", str(tmp_path / "models"))
    out = tmp_path / "mask.png"
    assert main(["segment", str(COFFEE), "--box", "170,15,410,290", "--point", "290,150",
                 "--out", str(out), "--overlay", str(tmp_path / "ov.png")]) == 0
    printed = capsys.readouterr().out
    assert "engine: classic" in printed and "no checkpoint" in printed
    mask = np.array(Image.open(out))
    assert mask.shape == (400, 600) and set(np.unique(mask)) <= {0, 255}
    inside = mask[15:290, 170:410] > 0
    assert inside.sum() > 0.15 * inside.size           # a real object, not a speck
    assert (mask > 0).sum() == inside.sum()            # nothing outside the box
    assert (tmp_path / "ov.png").exists()


def test_segment_uses_an_installed_sam_checkpoint(tmp_path, capsys, monkeypatch):
    from engines.hosts.tiny import tiny_sam
    models = tmp_path / "models"
    models.mkdir()
    entry = catalogue.get_entry("sam-vit-b")
    torch.save(tiny_sam().state_dict(), catalogue.model_path(entry, models))
    monkeypatch.setattr(catalogue, "is_installed", lambda e, d=None: catalogue.model_path(e, d).exists())
    monkeypatch.setattr("engines.hosts.sam.build_sam_architecture", lambda arch: tiny_sam(seed=5))
    monkeypatch.setenv("ANNOTATOR_CACHE_DIR", str(tmp_path / "cache"))
    args = ["segment", str(COFFEE), "--point", "300,200", "--models-dir", str(models),
            "--out", str(tmp_path / "m.png")]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "engine: sam (sam_vit_b_01ec64.pth)" in first and "embedding: computed" in first
    assert main(args) == 0                              # second run: the encoder is not re-run
    assert "embedding: disk" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["segment", "missing.png", "--point", "1,1"], "missing.png"),
    (["segment", str(COFFEE)], "empty prompt"),
    (["segment", str(COFFEE), "--point", "900,10"], "outside the 600x400 image"),
    (["segment", str(COFFEE), "--box", "700,500,800,600"], "no area inside"),
    (["segment", str(COFFEE), "--point", "1,1", "--engine", "sam2"], "sam2: no checkpoint"),
])
def test_segment_bad_input_is_a_clear_error(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setenv("ANNOTATOR_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.chdir(tmp_path)
    assert main(argv + ["--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_bad_checkpoint_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "sam_vit_b.pth"
    bad.write_bytes(b"\x00" * 100)
    code = main(["segment", str(COFFEE), "--point", "5,5", "--engine", "sam", "--checkpoint", str(bad),
                 "--out", str(tmp_path / "x.png")])
    assert code == 2 and "sam_vit_b.pth" in capsys.readouterr().err


def test_console_script_runs(tmp_path):
    exe = Path(sys.executable).with_name("annotator")
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "segment" in result.stdout


def test_written_files_get_ordinary_permissions(tmp_path, monkeypatch):
    """Atomic writes go through mkstemp (0600); outputs must follow the umask instead."""
    import os
    monkeypatch.setenv("ANNOTATOR_MODELS_DIR", str(tmp_path / "models"))
    out = tmp_path / "mask.png"
    assert main(["segment", str(COFFEE), "--box", "170,15,410,290", "--out", str(out)]) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
