"""Bad checkpoints give one clear error naming the file and what was expected."""
import pickle

import numpy as np
import pytest
import torch

from engines.files.checkpoints import describe_checkpoint, load_state_dict
from engines.hosts.sam2 import Sam2Engine
from engines.hosts.sam import SamEngine
from engines.hosts.tiny import tiny_sam, tiny_sam2
from engines.types import CheckpointError


class Payload:
    """Unpickling this would create a marker file: the loader must never do it."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_sam_checkpoint_round_trip(tmp_path, monkeypatch):
    model = tiny_sam()
    path = tmp_path / "tiny_sam.pth"
    torch.save(model.state_dict(), path)
    monkeypatch.setattr("engines.hosts.sam.build_sam_architecture", lambda arch: tiny_sam(seed=1))
    engine = SamEngine.from_checkpoint(path, arch="vit_b", device="cpu")
    for k, v in model.state_dict().items():
        assert torch.equal(engine.model.state_dict()[k], v), k
    assert engine.backbone_key.startswith("sam:vit_b:")
    img = np.zeros((40, 50, 3), np.uint8)
    assert engine.predict(engine.embed(img), __import__("engines.types").types.Prompt(box=np.array([2, 2, 30, 30]))).masks.shape == (1, 40, 50)


def test_sam2_checkpoint_in_official_layout(tmp_path, monkeypatch):
    model = tiny_sam2()
    path = tmp_path / "tiny_sam2.pt"
    torch.save({"model": model.state_dict()}, path)   # the official {"model": ...} wrapper
    monkeypatch.setattr("engines.hosts.sam2.build_sam2_architecture", lambda arch: tiny_sam2(seed=1))
    engine = Sam2Engine.from_checkpoint(path, arch="hiera_t", device="cpu")
    for k, v in model.state_dict().items():
        assert torch.equal(engine.model.state_dict()[k], v), k


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict(tmp_path / "nope.pth", "SAM vit_b")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_state_dict(empty, "SAM vit_b")


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("this is a text file, not weights")
    with pytest.raises(CheckpointError) as err:
        load_state_dict(path, "SAM vit_b")
    assert "notes.pth" in str(err.value) and "SAM vit_b" in str(err.value)


def test_truncated_checkpoint(tmp_path):
    full = tmp_path / "full.pth"
    torch.save(tiny_sam().state_dict(), full)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or not a checkpoint") as err:
        SamEngine.from_checkpoint(cut, arch="vit_b")
    assert "cut.pth" in str(err.value)


def test_pickle_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        torch.save({"weight": torch.zeros(2), "x": Payload(str(marker))}, f)
    with pytest.raises(CheckpointError, match="refused") as err:
        load_state_dict(path, "SAM vit_b")
    assert "evil.pth" in str(err.value)
    assert not marker.exists()
    # a raw pickle (not a torch zip) carrying the payload is refused too
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps(Payload(str(marker))))
    with pytest.raises(CheckpointError):
        load_state_dict(raw, "SAM vit_b")
    assert not marker.exists()


def test_checkpoint_of_another_architecture(tmp_path, monkeypatch):
    path = tmp_path / "sam2_in_disguise.pth"
    torch.save({"model": tiny_sam2().state_dict()}, path)
    with pytest.raises(CheckpointError) as err:
        SamEngine.from_checkpoint(path)            # arch unknown: guessed from the keys
    assert "sam2_in_disguise.pth" in str(err.value) and "SAM 2" in str(err.value)
    # forcing the arch: keys do not fit, the message says what the file looks like
    monkeypatch.setattr("engines.hosts.sam.build_sam_architecture", lambda arch: tiny_sam())
    with pytest.raises(CheckpointError, match="does not fit SAM vit_b.*looks like SAM 2"):
        SamEngine.from_checkpoint(path, arch="vit_b")


def test_same_family_other_size(tmp_path, monkeypatch):
    path = tmp_path / "wide.pth"
    torch.save(tiny_sam(embed_dim=96).state_dict(), path)
    monkeypatch.setattr("engines.hosts.sam.build_sam_architecture", lambda arch: tiny_sam(embed_dim=64))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        SamEngine.from_checkpoint(path, arch="vit_b")


def test_describe_checkpoint():
    assert describe_checkpoint({"image_encoder.pos_embed": torch.zeros(1, 64, 64, 768)}) == "SAM (vit_b)"
    assert describe_checkpoint({"image_encoder.pos_embed": torch.zeros(1, 64, 64, 1280),
                                "mask_decoder.hf_token.weight": torch.zeros(1)}) == "HQ-SAM (vit_h)"
    assert describe_checkpoint({"foo": torch.zeros(1)}) == "not a SAM-family state dict"
