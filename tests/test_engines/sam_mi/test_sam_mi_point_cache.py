"""Editing the typed list on the same image re-uses both embeddings and SAM's answers per
grid point: only points not sampled before are decoded, and the answer is the one a
fresh engine gives. The dense-grid baseline (prompter="grid") never uses the cache."""
from __future__ import annotations

import numpy as np
import pytest

from engines.sam_mi import SamMiEngine
from engines.types import OptionsError
from sam_mi_helpers import LENIENT, scene, write_models


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_models(tmp_path_factory.mktemp("sammi-cache"))


def test_an_edited_list_decodes_only_new_points_and_answers_as_a_fresh_engine(files):
    sam, clip = files
    engine = SamMiEngine.from_checkpoint(sam, clip=clip)
    img, _ = scene()
    emb = engine.embed(img)
    first = engine.propose(emb, {"classes": ["red square", "blue disc"], **LENIENT})
    assert first.extras["decoder_passes"] >= 1 and first.extras["points_cached"] == 0
    again = engine.propose(engine.embed(img), {"classes": ["red square", "blue disc"], **LENIENT})
    assert again.extras["decoder_passes"] == 0
    assert again.extras["points_cached"] == len(again.extras["points"])
    np.testing.assert_array_equal(again.masks, first.masks)
    edited = {"classes": ["red square", "sky"], **LENIENT}
    second = engine.propose(emb, edited)
    new = set(map(tuple, second.extras["points"])) - set(map(tuple, first.extras["points"]))
    assert second.extras["points_cached"] == len(second.extras["points"]) - len(new)
    fresh = SamMiEngine.from_checkpoint(sam, clip=clip)
    reference = fresh.propose(fresh.embed(img), edited)
    np.testing.assert_array_equal(second.masks, reference.masks)
    np.testing.assert_allclose(second.scores, reference.scores, rtol=1e-5)
    grid = engine.propose(emb, {**edited, "prompter": "grid"})
    assert grid.extras["points_cached"] == 0 and len(grid.extras["points"]) == engine.cfg.grid ** 2
    with pytest.raises(OptionsError, match="prompter must be one of tspp, grid"):
        engine.propose(emb, {**edited, "prompter": "everything"})
