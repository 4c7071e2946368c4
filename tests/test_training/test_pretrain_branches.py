"""training.pretrain_branches: small Hiera / U²-Netp stand-ins trained on salient targets,
saved in their official layouts, which engines.pmg_sam and the pmg-sam adapter load."""
from __future__ import annotations

import json

import pytest
import torch

from training import pretrain_branches, synthetic

TINY_HIERA = {"embed_dim": 8, "num_heads": 1, "stages": [1, 1, 1, 1]}


@pytest.fixture(scope="module")
def branches(tmp_path_factory):
    root = tmp_path_factory.mktemp("branches")
    data = synthetic.generate(root / "data", 8, size=64, seed=0)
    record = pretrain_branches.pretrain(str(data), str(root / "data" / "images"), root / "out",
                                        hiera_steps=2, u2net_steps=2, batch_size=2, side=64,
                                        u2net_size=32, val_fraction=0.25, hiera=TINY_HIERA,
                                        log=lambda m: None)
    return root / "out", record, data


def test_both_files_load_unchanged_in_the_engine(branches):
    from engines.pmg_sam import HieraSpec, load_hiera_branch, load_u2net_encoder
    out, record, _ = branches
    assert json.loads((out / "branches.json").read_text()) == record
    assert record["hiera_spec"]["stages"] == [1, 1, 1, 1] and record["train_images"] > 0
    assert set(record["u2net"]["val"]) == {"maxF", "MAE", "S"}
    spec = HieraSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in record["hiera_spec"].items()})
    branch = load_hiera_branch(out / "small_hiera.pth", spec)
    saved = torch.load(out / "small_hiera.pth", weights_only=True)
    own = branch.trunk.state_dict()
    assert all(torch.equal(own[k], saved[k]) for k in own)
    feats = branch(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [8, 16, 32, 64]
    u2 = load_u2net_encoder(out / "u2net.pth")
    assert u2.channels == (64,) * 6


def test_training_moves_the_weights_and_two_steps_lower_an_overfit_loss():
    torch.manual_seed(0)
    model = pretrain_branches.U2NetP()
    x = torch.randn(2, 3, 32, 32)
    y = (torch.rand(2, 1, 32, 32) > 0.5).float()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = pretrain_branches.train_branch(model, x, y, size=32, steps=6, batch_size=2, lr=3e-3,
                                            seed=0, log=lambda m: None)
    assert losses[-1] < losses[0]
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_pmg_sam_adapter_trains_on_them(branches):
    from training.api import build_adapter
    out, record, _ = branches
    config = {"image_size": 64, "u2net_size": 32, "hiera_channels": [8, 16, 32, 64],
              "u2_channels": [64] * 6, "adapter_channels": 4, "growth": 4, "gn_groups": 4,
              "premask_size": 16, "transformer_dim": 32, "num_heads": 2, "mlp_dim": 64,
              "premask_patch": 4, "mask_in_chans": 4, "iou_head_hidden_dim": 32}
    adapter = build_adapter("pmg-sam", str(out / "small_hiera.pth"), config=config,
                            hiera=record["hiera_spec"])
    feats = adapter.encode(torch.randn(1, 3, 64, 64))
    assert feats["u2_0"].shape[1] == 64


def test_bad_data_is_one_error_line(tmp_path, capsys):
    code = pretrain_branches.main(["--data", str(tmp_path / "none.json"), "--images", str(tmp_path),
                                   "--out", str(tmp_path / "o")])
    assert code == 2 and "none.json" in capsys.readouterr().err
