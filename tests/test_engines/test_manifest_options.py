"""The manifest's training options (`EngineInfo.options`, shown by the Train dialog): each
names a keyword its engine's training adapter takes, a choice defaults to one of its
values, and a row that breaks this is refused when the table is checked."""
from __future__ import annotations

import importlib
import inspect
from dataclasses import replace

import pytest

from engines import manifest
from engines.manifest import EngineOption


def test_every_declared_option_is_an_adapter_keyword():
    declared = [info for info in manifest.ENGINES if info.options]
    assert [info.name for info in declared] == ["sam-mi"]
    for info in declared:
        build = importlib.import_module(info.adapter).build
        params = inspect.signature(build).parameters
        for option in info.options:
            assert option.name in params, (info.name, option.name)
    clip, stage = manifest.get("sam-mi").options
    assert (clip.kind, clip.catalogue_arch, stage.kind, stage.default, stage.choices) == \
        ("file", "clip_vit_b16", "choice", "1", ("1", "2"))


@pytest.mark.parametrize("option", [
    EngineOption("x", "colour", "X:", "what"),
    EngineOption("x", "choice", "X:", "what", default="3", choices=("1", "2")),
    EngineOption("x", "choice", "X:", "what"),
    EngineOption("x", "choice", "X:", "what", default="1", choices=("1",), catalogue_arch="a"),
])
def test_a_malformed_option_is_refused(option):
    row = replace(manifest.get("sam-mi"), options=(option,))
    with pytest.raises(ValueError, match="option 'x'"):
        manifest._check([row])


def test_an_option_twice_or_on_an_untrained_engine_is_refused():
    with pytest.raises(ValueError, match="option 'clip'"):
        manifest._check([replace(manifest.get("sam-mi"), options=manifest.get("sam-mi").options * 2)])
    with pytest.raises(ValueError, match="option 'clip'"):
        manifest._check([replace(manifest.get("sam"), train=None, adapter=None,
                                 options=manifest.get("sam-mi").options[:1])])
