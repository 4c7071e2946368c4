"""The runtime folder the runtime tests' engines find (ANNOTATOR_RUNTIME_DIR)."""
from __future__ import annotations

import pytest

from engines.runtime.store import ENV_RUNTIME_DIR, RuntimeStore


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store for the module (conversions are the slow part), as the engines find it."""
    folder = tmp_path_factory.mktemp("runtime")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_RUNTIME_DIR, str(folder))
        yield RuntimeStore(folder)


@pytest.fixture
def own_store(tmp_path, monkeypatch):
    """A fresh store for one test (calibration and failure records start empty)."""
    monkeypatch.setenv(ENV_RUNTIME_DIR, str(tmp_path))
    return RuntimeStore(tmp_path)
