"""HQ-SAM's training adapter: exactly the 5 HQ parts train, frozen SAM gets no gradient,
its HQ-only logits are the engine's, a saved plugin loads into the engine, and a few
Adam steps overfit one image (HQ-SAM 2 on a SAM 2 host too)."""
import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engines.files.checkpoints import checkpoint_identity
from engines.hq_sam.weights import HQ2_PARTS, HQ_PARTS
from engines.hq_sam.engine import HqSamEngine
from engines.hosts.tiny import tiny_sam
from engines.types import Prompt, PromptError
from training.api import TrainPrompt, build_adapter


@pytest.fixture(scope="module")
def sam_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("hq") / "tiny_sam.pth"
    torch.save(tiny_sam(seed=2).state_dict(), path)
    return path


@pytest.fixture()
def adapter(sam_path):
    torch.manual_seed(0)
    return build_adapter("hq-sam", str(sam_path))


def scene(h=200, w=240):
    """A ring and a thin bar (HQ-SAM's kind of target) on dark noise."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    r2 = (yy - 100) ** 2 + (xx - 110) ** 2
    gt = ((r2 < 60 ** 2) & (r2 >= 30 ** 2)) | ((xx > 170) & (xx < 176) & (yy > 20) & (yy < 180))
    img[gt] += 150
    return img, gt


def tight_box(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def bce_dice(logits, gt):
    """BCE + Dice 1:1 on logits upsampled to the GT's size (dense, not point-sampled)."""
    up = F.interpolate(logits, gt.shape[-2:], mode="bilinear", align_corners=False)
    p = up.sigmoid()
    dice = 1 - (2 * (p * gt).sum() + 1) / (p.sum() + gt.sum() + 1)
    return F.binary_cross_entropy_with_logits(up, gt) + dice


def test_identity_recipe_and_trainable_parts(adapter, sam_path):
    assert adapter.backbone_identity() == f"sam:tiny:{checkpoint_identity(sam_path)}"
    recipe = adapter.default_recipe()
    assert (recipe["optimizer"], recipe["lr"], recipe["lr_step_at"]) == ("adam", 1e-3, 10 / 12)
    assert recipe["prompt_mix"] == {"tight-box": 1, "points-10": 1, "noisy-mask": 1}
    assert {k.split(".")[0] for k in adapter.trainable.state_dict()} == set(HQ_PARTS)
    trainable = {id(p) for p in adapter.trainable.parameters()}
    requires = {id(p) for p in adapter.parameters() if p.requires_grad}
    assert trainable == requires
    # the parts are the model's own modules, not copies, and are not listed twice
    assert adapter.trainable.hf_token is adapter.model.mask_decoder.hf_token
    assert not any(k.startswith("_parts") for k in adapter.state_dict())


def test_official_hq_file_as_backbone_starts_from_its_hq_weights(tmp_path):
    from engines.hq_sam.engine import tiny_hq_sam
    model = tiny_hq_sam(seed=7)
    path = tmp_path / "sam_hq_tiny.pth"
    torch.save(model.state_dict(), path)
    adapter = build_adapter("hq-sam", str(path))
    for k, v in adapter.plugin_state().items():
        assert torch.equal(v, model.mask_decoder.state_dict()[k]), k


def test_frozen_parameters_get_no_gradient(adapter):
    img, gt = scene()
    frame = adapter.frame(gt.shape)
    feats = adapter.encode(adapter.preprocess(img)[None])
    mask = frame.mask(gt)
    low = F.interpolate(torch.from_numpy(mask)[None, None].float(), scale_factor=0.25).numpy()[0, 0]
    prompts = [TrainPrompt("tight-box", box=tight_box(mask)),
               TrainPrompt("points-10", points=np.argwhere(mask)[::400, ::-1].astype(float),
                           labels=np.ones(len(np.argwhere(mask)[::400]), int)),
               TrainPrompt("noisy-mask", mask=low)]
    batch = {k: v.expand(3, *v.shape[1:]) for k, v in feats.items()}
    out = adapter(batch, prompts)
    side = adapter.side
    assert out.logits.shape == (3, 1, side // 4, side // 4)
    out.logits.square().mean().backward()
    for name, p in adapter.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    with pytest.raises(PromptError, match="no box, points or mask"):
        adapter(feats, [TrainPrompt("stored")])


def test_adapter_logits_equal_engine_hq_only_logits(adapter):
    img, gt = scene(180, 260)
    engine = HqSamEngine(copy.deepcopy(adapter.model), backbone_key="t", device="cpu",
                         hq_token_only=True)
    emb = engine.embed(img)
    frame = adapter.frame(gt.shape)
    feats = adapter.encode(adapter.preprocess(img)[None])
    assert torch.equal(feats["image_embed"], emb.features["image_embed"])
    box = tight_box(gt)
    points, labels = np.array([[110.0, 45.0], [60.0, 100.0]]), np.array([1, 0])
    low = (np.random.default_rng(1).random((1, adapter.side // 4, adapter.side // 4)) > 0.5).astype(np.float32)
    cases = [(Prompt(box=box), TrainPrompt("tight-box", box=frame.box(box))),
             (Prompt(points=points, labels=labels),
              TrainPrompt("points", points=frame.coords(points), labels=labels)),
             # a mask prompt enters as 0/255 in training; the engine takes whatever it is given
             (Prompt(box=box, mask_logits=low * 255), TrainPrompt("noisy-mask", box=frame.box(box), mask=low[0]))]
    with torch.no_grad():
        for prompt, train_prompt in cases:
            expected = engine.predict(emb, dataclasses.replace(prompt, multimask=False)).low_res_logits
            got = adapter(feats, [train_prompt]).logits[0].numpy()
            np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_overfit_one_image_and_plugin_round_trip(adapter, sam_path, tmp_path):
    img, gt = scene()
    frame = adapter.frame(gt.shape)
    feats = adapter.encode(adapter.preprocess(img)[None])
    target = torch.from_numpy(frame.mask(gt)).float()[None, None]
    prompt = TrainPrompt("tight-box", box=tight_box(frame.mask(gt)))
    optimizer = torch.optim.Adam(adapter.trainable.parameters(), lr=1e-3)
    adapter.train()
    losses = []
    for _ in range(40):
        loss = bce_dice(adapter(feats, [prompt]).logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 4, losses[::8]
    # the trained parts, saved as a plugin, load into the engine on the same SAM file
    adapter.eval()
    plugin = adapter.export(tmp_path / "hq-tiny")
    engine = HqSamEngine.from_checkpoint(sam_path, plugin=plugin, device="cpu", exact=True, hq_token_only=True)
    emb = engine.embed(img)
    box = tight_box(gt)
    with torch.no_grad():
        trained = adapter(feats, [TrainPrompt("tight-box", box=frame.box(box))]).logits[0].numpy()
    pred = engine.predict(emb, Prompt(box=box))
    np.testing.assert_allclose(pred.low_res_logits, trained, atol=1e-5, rtol=0)
    iou = (pred.masks[0] & gt).sum() / (pred.masks[0] | gt).sum()
    assert iou > 0.7, iou


# ---------------------------------------------------------------- HQ-SAM 2 host

@pytest.fixture(scope="module")
def adapter2(tiny_sam2_model):
    from training.adapters.hq_sam import HqSam2Adapter
    torch.manual_seed(0)
    return HqSam2Adapter(copy.deepcopy(tiny_sam2_model), arch="tiny", identity="abc")


def test_hq_sam2_adapter_trains_only_hq_parts_and_matches_engine(adapter2):
    from engines.hq_sam.sam2 import HqSam2Engine
    assert adapter2.backbone_identity() == "sam2:tiny:abc"
    assert {k.split(".")[0] for k in adapter2.trainable.state_dict()} == set(HQ2_PARTS)
    img, gt = scene(150, 210)
    frame = adapter2.frame(gt.shape)
    feats = adapter2.encode(adapter2.preprocess(img)[None])
    box = tight_box(gt)
    adapter2.train()
    out = adapter2(feats, [TrainPrompt("tight-box", box=frame.box(box))])
    assert out.logits.shape == (1, 1, adapter2.side // 4, adapter2.side // 4)
    out.logits.square().mean().backward()
    for name, p in adapter2.named_parameters():
        assert (p.grad is not None) == p.requires_grad == name.startswith("hq."), name
    engine = HqSam2Engine(copy.deepcopy(adapter2.model), copy.deepcopy(adapter2.hq), backbone_key="t",
                          device="cpu", exact=True, hq_token_only=True)
    emb = engine.embed(img)
    torch.testing.assert_close(feats["image_embed"], emb.features["image_embed"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(out.logits[0].detach().numpy(),
                               engine.predict(emb, Prompt(box=box)).low_res_logits, atol=1e-5, rtol=0)


def test_foreign_backbone_is_refused(tmp_path):
    from engines.types import CheckpointError
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7)}, path)
    with pytest.raises(CheckpointError, match="resnet.pth is not a SAM checkpoint"):
        build_adapter("hq-sam", str(path))
