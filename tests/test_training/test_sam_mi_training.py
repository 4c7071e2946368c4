"""SAM-MI's training adapter (training/adapters/sam_mi.py) on tiny random-weight SAM and
CLIP files: semantic targets, both stages overfit one synthetic image, which parameters
train, the plugin round trip into the engine's trained mode and its vocabulary."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engines.files import read_plugin_metadata
from engines.sam_mi import SamMiEngine
from engines.types import CheckpointError
from sam_mi_helpers import LENIENT, scene, scene_items, write_models
from training.api import build_adapter
from training.semantic import IGNORE, semantic_items, semantic_labels, vocabulary_of
from training.trainer import TrainConfig, Trainer


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_models(tmp_path_factory.mktemp("sammi-train"))


def _config(tmp_path, files, stage, steps=2, **options):
    sam, clip = files
    return TrainConfig(engine="sam-mi", backbone=str(sam), out=str(tmp_path / f"stage{stage}"),
                       steps=steps, batch_size=1, val_fraction=0.0, cache_dir=None, device="cpu",
                       progress=False,
                       options={"clip": str(clip), "stage": stage, "sam_options": LENIENT,
                                "recipe": {"lr": 3e-3, "grad_clip": None}, **options})


def test_semantic_labels_ignore_unlabelled_pixels_and_class_clashes():
    a = np.zeros((4, 6), bool)
    a[:, :3] = True
    b = np.zeros((4, 6), bool)
    b[:, 2:4] = True
    same = np.zeros((4, 6), bool)
    same[0, 0:2] = True
    labels = semantic_labels([a, b, same], [0, 1, 0], (4, 6))
    assert (labels[:, :2] == 0).all() and (labels[:, 3] == 1).all()
    assert (labels[:, 2] == IGNORE).all()             # two classes claim it
    assert (labels[:, 4:] == IGNORE).all()            # nobody labelled it
    with_bg = semantic_labels([a], [0], (4, 6), unlabelled=2)
    assert (with_bg[:, 3:] == 2).all()
    items = scene_items()
    assert vocabulary_of(items) == ["square", "disc"]
    assert vocabulary_of(items, background="background") == ["square", "disc", "background"]
    (one,) = semantic_items(items, ["square", "disc"])
    img, objects = scene()
    lab = one.labels()
    assert (lab[objects[0][0]] == 0).all() and (lab[objects[1][0]] == 1).all()
    assert (lab[~(objects[0][0] | objects[1][0])] == IGNORE).all()


@pytest.mark.parametrize("stage", [1, 2])
def test_each_stage_overfits_one_image(tmp_path, files, stage):
    items = scene_items()
    trainer = Trainer(_config(tmp_path, files, stage, steps=6), items=items, val_items=scene_items())
    before = trainer.validate()
    result = trainer.run()
    after = result.metrics
    assert np.isfinite(result.losses).all()
    assert after["loss"] < before["loss"], (before, after)
    assert result.plugin is not None and result.plugin.is_file()


def test_stage_1_trains_the_tspp_alone_and_stage_2_the_heads_and_clips_attention(files):
    sam, clip = files
    one = build_adapter("sam-mi", str(sam), clip=str(clip), stage=1)
    names = {n for n, p in one.named_parameters() if p.requires_grad}
    assert names and all(n.startswith("model.heads.tspp.") for n in names)
    two = build_adapter("sam-mi", str(sam), clip=str(clip), stage=2)
    trainable = {n for n, p in two.named_parameters() if p.requires_grad}
    assert not any(n.startswith("sam.") for n in trainable)            # SAM stays frozen
    heads = {n for n, _ in two.model.heads.named_parameters()}
    assert {f"model.heads.{n}" for n in heads} <= trainable
    clip_trained = {n for n in trainable if n.startswith("model.clip.")}
    assert clip_trained and all(".attn.in_proj_" in n or "positional_embedding" in n for n in clip_trained)
    assert any(n.startswith("model.clip.clip.transformer.") for n in clip_trained)    # text tower too
    groups = {g["name"]: g for g in two.param_groups([p for p in two.parameters() if p.requires_grad],
                                                     two.default_recipe())}
    assert groups["heads"]["lr"] == pytest.approx(2e-4)
    assert groups["tspp"]["lr"] == pytest.approx(2e-5) and groups["clip"]["lr"] == pytest.approx(2e-6)
    # the k rows of a packed in_proj get no gradient (CAT-Seg trains q and v)
    w = two.model.clip.clip.visual.transformer.resblocks[0].attn.in_proj_weight
    (w.sum() * 1.0).backward()
    d = w.shape[0] // 3
    assert (w.grad[d:2 * d] == 0).all() and (w.grad[:d] != 0).all() and (w.grad[2 * d:] != 0).all()


def test_the_plugin_round_trips_into_the_engine_with_its_vocabulary(tmp_path, files):
    sam, clip = files
    result = Trainer(_config(tmp_path, files, 2, steps=1, background="floor"), items=scene_items()).run()
    assert result.plugin.parent == tmp_path / "stage2"         # one file, no sub-folders
    record = read_plugin_metadata(result.plugin)
    assert record["engine"] == "sam-mi" and record["stage"] == 2
    assert record["classes_seen"] == ["square", "disc", "floor"]
    engine = SamMiEngine.from_checkpoint(sam, clip=clip, plugin=result.plugin)
    assert engine.mode == "trained" and engine.classes_seen == ("square", "disc", "floor")
    # the saved heads and CLIP tensors are the trained ones
    trained = Trainer(_config(tmp_path / "again", files, 2, steps=1, background="floor"),
                      items=scene_items())
    trained.run()
    for k, v in trained.adapter.model.heads.state_dict().items():
        assert torch.equal(engine.model.heads.state_dict()[k], v), k
    q = "visual.transformer.resblocks.0.attn.in_proj_weight"
    assert torch.equal(engine.model.clip.clip.state_dict()[q], trained.adapter.model.clip.clip.state_dict()[q])
    img, _ = scene()
    props = engine.propose(engine.embed(img), {"classes": ["square", "kettle"], **LENIENT})
    assert props.extras["unseen"] == ["kettle"]       # open vocabulary: answered, flagged


def test_stage_2_starts_from_a_stage_1_plugin(tmp_path, files):
    sam, clip = files
    first = Trainer(_config(tmp_path, files, 1, steps=1), items=scene_items()).run()
    adapter = build_adapter("sam-mi", str(sam), clip=str(clip), stage=2, start_from=str(first.plugin))
    engine = SamMiEngine.from_checkpoint(sam, clip=clip, plugin=first.plugin)
    for k, v in engine.model.heads.tspp.state_dict().items():
        assert torch.equal(adapter.model.heads.tspp.state_dict()[k], v)
    assert read_plugin_metadata(first.plugin)["trained"] == ["tspp"]


def test_bad_options_and_files(tmp_path, files):
    sam, clip = files
    with pytest.raises(ValueError, match="stage must be 1"):
        build_adapter("sam-mi", str(sam), clip=str(clip), stage=3)
    with pytest.raises(ValueError, match="unknown option.*colour"):
        build_adapter("sam-mi", str(sam), clip=str(clip), colour=1)
    with pytest.raises(CheckpointError, match="sam_vit_b_01ec64.pth"):      # no SAM host
        build_adapter("sam-mi", str(tmp_path / "missing.pth"), clip=str(clip))
    with pytest.raises(CheckpointError, match="CLIP"):
        build_adapter("sam-mi", str(sam), clip=str(tmp_path / "nope.pt"))
    nameless = scene_items()
    for item in nameless:
        item.category = None
    adapter = build_adapter("sam-mi", str(sam), clip=str(clip), stage=1)
    with pytest.raises(ValueError, match="has no category"):
        adapter.prepare_items(nameless, train=True)


def test_stage_2_warns_once_when_sams_filters_drop_every_mask(files):
    sam, clip = files
    two = build_adapter("sam-mi", str(sam), clip=str(clip), stage=2)
    with pytest.warns(UserWarning, match="dropped every mask on 19 of the first 20 images"):
        for i in range(20):
            two._note_sam_answer(i != 0)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")             # once: later answers do not warn again
        for _ in range(30):
            two._note_sam_answer(True)
    fine = build_adapter("sam-mi", str(sam), clip=str(clip), stage=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in range(20):
            fine._note_sam_answer(i % 2 == 0)      # half the images keep masks: no warning
