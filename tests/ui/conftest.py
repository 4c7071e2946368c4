"""Fixtures for the GUI tests: a folder of small generated images, settings in a temp ini
file, and engine sessions over the classic engine (through the real Router with an empty
models folder) or a tiny random-weight SAM."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image


# (height, width, object box x0, y0, x1, y1) per image: a bright object on a dark field
IMAGES = [(96, 128, 30, 20, 80, 70), (96, 128, 60, 30, 110, 80), (80, 120, 10, 10, 50, 60)]


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, (h, w, x0, y0, x1, y1) in enumerate(IMAGES):
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[:] = (20, 30, 40)
        rgb[y0:y1, x0:x1] = (230, 200, 40)
        Image.fromarray(rgb).save(folder / f"img{i}.png")
    return folder


@pytest.fixture
def settings_path(tmp_path):
    return tmp_path / "settings.ini"


@pytest.fixture(scope="module")
def one_torch_thread():
    import torch
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture
def classic_factory(tmp_path, one_torch_thread):
    from annotator.core.session import EngineSession
    from engines.files.cache import EmbeddingCache
    from engines.router import Router

    models = tmp_path / "models"
    models.mkdir()

    def factory(on_event):
        return EngineSession(Router(models_dir=models, device="cpu"),
                             EmbeddingCache(memory_mb=64, disk=False), on_event, device="cpu")
    return factory


@pytest.fixture
def tiny_sam_factory(tiny_sam_model, one_torch_thread):
    from engines.hosts.sam import SamEngine
    from gui_helpers import single_engine_factory
    return single_engine_factory(SamEngine(tiny_sam_model, backbone_key="tiny", device="cpu"), "sam")
