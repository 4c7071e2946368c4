"""What every engine's runtime fidelity test checks, against its exact fp32 twin: the
features within the runtime's FEATURE_BOUND, a click's low-res logits within 4x that,
and the best masks' IoU (0.999 for OpenVINO fp32, 0.9 for the bf16 runtimes)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from engines.runtime import encoders
from engines.runtime.choice import FEATURE_BOUND
from engines.types import Prompt

# found, not imported (importing it first would defeat the telemetry test's check)
needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="OpenVINO is not installed")
IMAGE = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
CLICK = Prompt(points=np.array([[80.0, 60.0]]), labels=np.array([1]))
LOGIT_FACTOR = 4                # the decoder may amplify the features' error this much
MASK_IOU = {"openvino-fp32": 0.999}
MASK_IOU_BF16 = 0.9


def features(engine, image: np.ndarray = IMAGE) -> tuple:
    """Every tensor the engine's embedding holds, in name order."""
    emb = engine.embed(image)
    return tuple(emb.features[k] for k in sorted(emb.features))


def assert_within_bounds(exact, fast, runtime: str, image: np.ndarray = IMAGE,
                         prompt: Prompt = CLICK) -> None:
    """`fast` (running `runtime`) answers like `exact` within the runtime's bounds."""
    ref, out = features(exact, image), features(fast, image)
    assert len(out) == len(ref)
    err = encoders.relative_error(out, ref)
    assert err <= FEATURE_BOUND[runtime], (runtime, err)
    a, b = exact.predict(exact.embed(image), prompt), fast.predict(fast.embed(image), prompt)
    la, lb = np.asarray(a.low_res_logits, np.float64), np.asarray(b.low_res_logits, np.float64)
    assert np.linalg.norm(la - lb) / np.linalg.norm(la) <= LOGIT_FACTOR * FEATURE_BOUND[runtime]
    inter = np.logical_and(a.masks[0], b.masks[0]).sum()
    union = max(np.logical_or(a.masks[0], b.masks[0]).sum(), 1)
    assert inter / union >= MASK_IOU.get(runtime, MASK_IOU_BF16), runtime
