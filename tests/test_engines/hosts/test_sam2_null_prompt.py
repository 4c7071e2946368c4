"""Sam2Engine.predict_unprompted (IP-SAM's "null prompt" baseline) against the reference
SAM2ImagePredictor.predict() with no prompt, on a tiny random SAM 2; and a test-size
SAM 2 file loaded by name ("tiny")."""
import copy

import numpy as np
import pytest
import torch

from engines.hosts.sam2 import Sam2Engine
from engines.types import CheckpointError


@pytest.fixture(scope="module")
def reference(tiny_sam2_model):
    from sam2.sam2_image_predictor import SAM2ImagePredictor
    ref = SAM2ImagePredictor(copy.deepcopy(tiny_sam2_model))
    s = tiny_sam2_model.image_size // 4
    ref._bb_feat_sizes = [(s, s), (s // 2, s // 2), (s // 4, s // 4)]   # hard-coded for 1024 px
    return ref


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("multimask", [False, True])
def test_null_prompt_equals_the_reference_predictor_with_no_prompt(tiny_sam2_model, reference,
                                                                   exact, multimask):
    engine = Sam2Engine(copy.deepcopy(tiny_sam2_model), backbone_key="t", device="cpu", exact=exact)
    img = np.random.default_rng(3).integers(0, 256, (90, 130, 3), dtype=np.uint8)
    reference.set_image(img)
    masks, scores, logits = reference.predict(multimask_output=multimask)
    pred = engine.predict_unprompted(engine.embed(img), multimask=multimask)
    order = pred.extras["order"]
    assert len(pred.masks) == (3 if multimask else 1)
    np.testing.assert_allclose(pred.scores, scores[order], atol=1e-5, rtol=0)
    np.testing.assert_allclose(pred.low_res_logits, logits[order], atol=1e-5, rtol=0)
    differ = np.count_nonzero(pred.masks != masks[order].astype(bool))
    assert differ == 0 if exact else differ <= 0.001 * masks.size


def test_a_tiny_sam2_file_loads_by_name_only(tmp_path, tiny_sam2_model):
    path = tmp_path / "tiny2.pt"
    torch.save(tiny_sam2_model.state_dict(), path)
    engine = Sam2Engine.from_checkpoint(path, arch="tiny", device="cpu", image_size=256)
    assert engine.input_side == 256 and engine.backbone_key.startswith("sam2:tiny:")
    with pytest.raises(CheckpointError, match="not a SAM 2.1 checkpoint"):
        Sam2Engine.from_checkpoint(path, device="cpu")
