"""HQ-SAM's encoder on every runtime (tiny HQ model): its graph returns the embedding and
the first global-attention block's feature, within the same bounds as SAM's
(runtime_helpers); `exact` stays the reference SamPredictor bit for bit; its store and
calibration keys carry the output names, so it never shares a conversion with plain SAM
on one checkpoint; `annotator models calibrate` takes an official HQ-SAM file."""
from __future__ import annotations

import argparse
import copy

import numpy as np
import pytest
import torch

from engines.files.checkpoints import checkpoint_identity
from engines.files.plugins import save_plugin
from engines.hosts import SamEngine, tiny_sam
from engines.hq_sam import HqSamEngine, split_hq_checkpoint, tiny_hq_sam
from engines.runtime import choice, encoder_runtime

from runtime_helpers import CLICK, IMAGE, assert_within_bounds, needs_openvino

KEY = "hq-sam:tiny:abc123"


@pytest.fixture(scope="module")
def hq_model():
    return tiny_hq_sam(seed=3)


def _hq(model, runtime: str, exact: bool = False, key: str = KEY) -> HqSamEngine:
    return HqSamEngine(copy.deepcopy(model), backbone_key=key, device="cpu", exact=exact,
                       runtime=None if exact else runtime)


@pytest.mark.parametrize("runtime", ["torch-bf16", pytest.param("openvino-fp32", marks=needs_openvino),
                                     pytest.param("openvino-bf16", marks=needs_openvino)])
def test_hq_runtime_features_logits_and_masks_within_bounds(hq_model, runtime, store):
    fast = _hq(hq_model, runtime)
    assert fast.encoder.prepare() == runtime and encoder_runtime(fast) == runtime
    assert fast.backbone_key == f"{KEY}+{runtime}"
    emb = fast.embed(IMAGE)
    assert set(emb.features) == {"image_embed", "interm_0", "hq_features"}
    assert all(v.dtype == torch.float32 for v in emb.features.values())
    assert_within_bounds(_hq(hq_model, "exact", exact=True), fast, runtime)


def test_exact_still_equals_the_reference_predictor(hq_model, monkeypatch):
    """Whatever runtime is asked for, exact=True runs the reference modules: features and
    answers equal segment_anything_hq's SamPredictor bit for bit."""
    from segment_anything_hq import SamPredictor
    monkeypatch.setenv("ANNOTATOR_RUNTIME", "torch-bf16")
    engine = HqSamEngine(copy.deepcopy(hq_model), backbone_key=KEY, device="cpu", exact=True)
    assert encoder_runtime(engine) == "exact" and engine.backbone_key == KEY
    ref = SamPredictor(copy.deepcopy(hq_model))
    ref.set_image(IMAGE)
    emb = engine.embed(IMAGE)
    assert torch.equal(emb.features["image_embed"], ref.features)
    assert torch.equal(emb.features["interm_0"], ref.interm_features[0])
    masks, scores, logits = ref.predict(point_coords=CLICK.points, point_labels=CLICK.labels,
                                        multimask_output=True)
    pred = engine.predict(emb, CLICK)
    assert np.array_equal(pred.masks, masks.astype(bool))
    np.testing.assert_allclose(pred.low_res_logits, logits, atol=1e-5, rtol=0)
    np.testing.assert_allclose(pred.scores, scores, atol=1e-5, rtol=0)


@needs_openvino
def test_hq_and_plain_sam_never_share_a_conversion(hq_model, store):
    """The same checkpoint key on both graphs: the output names keep them apart."""
    sam = SamEngine(tiny_sam(seed=3), backbone_key=KEY, device="cpu", runtime="openvino-fp32")
    hq = _hq(hq_model, "openvino-fp32")
    assert sam.encoder.arch_key.endswith("->image_embed")
    assert hq.encoder.arch_key.endswith("->image_embed,interm_0")
    assert sam.encoder.model_key != hq.encoder.model_key
    assert sam.encoder.prepare() == hq.encoder.prepare() == "openvino-fp32"
    assert store.model_dir(sam.encoder.model_key) != store.model_dir(hq.encoder.model_key)
    assert len(sam.encoder(torch.zeros(1, 3, 256, 256))) == 1
    assert [o.shape for o in hq.encoder(torch.zeros(1, 3, 256, 256))] == [(1, 32, 16, 16), (1, 16, 16, 64)]


def test_one_encoder_key_serves_every_plugin_on_a_checkpoint(tmp_path, hq_model):
    sam_path = tmp_path / "tiny_sam.pth"
    sam_state, plugin = split_hq_checkpoint(hq_model.state_dict())
    torch.save(sam_state, sam_path)
    engines = []
    for name, shift in (("a", 0.0), ("b", 1.0)):
        path = save_plugin(tmp_path / f"{name}.safetensors", {k: v + shift for k, v in plugin.items()},
                           engine="hq-sam", backbone_arch="sam:tiny",
                           backbone_checkpoint=checkpoint_identity(sam_path))
        engines.append(HqSamEngine.from_checkpoint(sam_path, plugin=path, device="cpu"))
    a, b = engines
    assert a.backbone_key != b.backbone_key                     # the decoders differ
    assert a.encoder.model_key == b.encoder.model_key           # the encoder does not
    assert a.encoder.model_key.startswith(f"hq-sam:tiny:{checkpoint_identity(sam_path)}@256|fast")


def test_models_calibrate_takes_an_official_hq_file(tmp_path, hq_model, own_store, monkeypatch, capsys):
    from annotator.commands import calibrate
    path = tmp_path / "sam_hq_tiny.pth"
    torch.save(hq_model.state_dict(), path)
    monkeypatch.setattr(choice, "offered_runtimes", lambda: ["torch-fp32", "torch-bf16"])
    assert calibrate.run(argparse.Namespace(checkpoint=str(path))) == 0
    out = capsys.readouterr().out
    assert f"hq-sam:tiny ({path.name}) on this CPU" in out and "| torch-bf16 |" in out
    engine = HqSamEngine.from_checkpoint(path, device="cpu", runtime="auto")
    record = own_store.calibration(engine.encoder.arch_key, choice.machine_facts())
    assert record is not None and set(record["seconds"]) == {"torch-fp32", "torch-bf16"}
    assert not engine.encoder.needs_calibration                # the window will not redo it
