"""Every encoder runtime forced on tiny SAM / SAM 2 hosts: fidelity against the exact
fp32 path within the stated bounds, cache keys that never mix precisions, and the
failure paths (damaged converted model, failed conversion, interrupted calibration).
bf16 on a CPU without bf16 units is slow, not wrong, so none of this needs the hardware."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from engines.hosts import Sam2Engine, SamEngine, tiny_sam, tiny_sam2
from engines.runtime import choice, encoders
from engines.runtime.choice import requested_runtime
from engines.runtime.store import RuntimeStore
from engines.types import EngineError

from runtime_helpers import IMAGE, assert_within_bounds
from runtime_helpers import features as _features

if importlib.util.find_spec("openvino") is None:     # found, not imported (see the telemetry test)
    pytest.skip("OpenVINO is not installed", allow_module_level=True)


def _host(kind: str, runtime: str, store: RuntimeStore, exact: bool = False):
    model = tiny_sam() if kind == "sam" else tiny_sam2()
    cls = SamEngine if kind == "sam" else Sam2Engine
    host = cls(model, backbone_key=f"{kind}:tiny:abc123", device="cpu", exact=exact, runtime=runtime)
    assert host.encoder.store.dir == store.dir
    return host


def _prepared(kind, runtime, store):
    host = _host(kind, runtime, store)
    assert host.encoder.prepare() == runtime
    return host


@pytest.mark.parametrize("kind", ["sam", "sam2"])
@pytest.mark.parametrize("runtime", ["torch-bf16", "openvino-fp32", "openvino-bf16"])
def test_runtime_features_logits_and_masks_within_bounds(kind, runtime, store):
    assert_within_bounds(_host(kind, "exact", store, exact=True), _prepared(kind, runtime, store), runtime)


def test_backbone_keys_never_mix_precisions(store):
    keys = {rt: _host("sam", rt, store).backbone_key for rt in ("exact", "torch-fp32", "torch-bf16")}
    assert keys["torch-fp32"] == "sam:tiny:abc123" == _host("sam", "exact", store, exact=True).backbone_key
    assert keys["torch-bf16"] == "sam:tiny:abc123+torch-bf16"
    ov = _host("sam2", "openvino-bf16", store)
    ov.encoder.prepare()
    assert ov.backbone_key == "sam2:tiny:abc123+openvino-bf16"


def test_converted_model_is_reused_then_a_damaged_one_rebuilt(store, monkeypatch, caplog):
    _prepared("sam", "openvino-fp32", store)               # converted (or reused) once
    calls = []
    real = encoders.convert_openvino
    monkeypatch.setattr(choice, "convert_openvino", lambda *a: calls.append(1) or real(*a))
    host = _host("sam", "openvino-fp32", store)             # converted before: ready at once
    assert host.encoder.runtime == "openvino-fp32" and not calls
    folder = store.model_dir(host.encoder.model_key)
    (folder / "model.bin").write_bytes(b"not a model")
    host = _host("sam", "openvino-fp32", store)
    assert host.encoder.runtime == "torch-fp32"             # damaged: torch answers meanwhile
    assert host.encoder.prepare() == "openvino-fp32" and calls == [1]
    assert "damaged" in caplog.text
    assert encoders.relative_error(_features(host), _features(_host("sam", "exact", store, True))) < 1e-4


def test_failed_conversion_falls_back_once_with_one_message(own_store, tmp_path, monkeypatch):
    store = own_store
    calls = []

    def broken(*_):
        calls.append(1)
        raise ValueError("unsupported operation aten::weird")
    monkeypatch.setattr(choice, "convert_openvino", broken)
    host = _host("sam", "openvino-bf16", store)
    assert host.encoder.prepare() == "torch-fp32"
    assert "aten::weird" in host.encoder.message and "torch-fp32" in host.encoder.message
    again = _host("sam", "openvino-bf16", store)
    assert again.encoder.prepare() == "torch-fp32" and calls == [1]     # remembered
    assert again.embed(IMAGE).features["image_embed"].dtype == torch.float32


def test_calibration_picks_records_and_is_redone_when_the_machine_changes(own_store, tmp_path, monkeypatch):
    store = own_store
    monkeypatch.setattr(choice, "offered_runtimes", lambda: ["torch-fp32", "torch-bf16"])
    host = _host("sam", "auto", store)
    assert host.encoder.needs_calibration and host.encoder.runtime == "torch-fp32"
    picked = host.encoder.prepare()
    record = store.calibration(host.encoder.arch_key, choice.machine_facts())
    assert record["picked"] == picked and set(record["seconds"]) == {"torch-fp32", "torch-bf16"}
    assert record["rel_error"]["torch-fp32"] == 0.0
    assert not _host("sam", "auto", store).encoder.needs_calibration
    monkeypatch.setattr(choice, "machine_facts", lambda: {"cpu": "another one"})
    assert _host("sam", "auto", store).encoder.needs_calibration


def test_an_interrupted_calibration_is_redone(own_store, tmp_path, monkeypatch):
    store = own_store
    monkeypatch.setattr(choice, "offered_runtimes", lambda: ["torch-fp32", "torch-bf16"])
    real = choice.build_runner

    def quit_midway(runtime, *a, **k):
        if runtime == "torch-bf16":
            raise KeyboardInterrupt
        return real(runtime, *a, **k)
    monkeypatch.setattr(choice, "build_runner", quit_midway)
    host = _host("sam", "auto", store)
    with pytest.raises(KeyboardInterrupt):
        host.encoder.prepare()
    monkeypatch.setattr(choice, "build_runner", real)
    assert _host("sam", "auto", store).encoder.needs_calibration
    assert not list(tmp_path.glob("*.part"))


def test_runtime_from_the_environment_and_a_bad_name(monkeypatch):
    monkeypatch.setenv("ANNOTATOR_RUNTIME", "torch-bf16")
    assert requested_runtime() == "torch-bf16"
    assert requested_runtime("torch-fp32") == "torch-fp32"
    monkeypatch.setenv("ANNOTATOR_RUNTIME", "tensorrt")
    with pytest.raises(EngineError, match="ANNOTATOR_RUNTIME= 'tensorrt' is not a runtime"):
        requested_runtime()


def test_openvino_runs_without_its_usage_telemetry():
    import subprocess
    import sys
    code = ("import sys; from engines.runtime.encoders import import_openvino; ov = import_openvino(); "
            "import openvino.tools.ovc.convert_impl as c; print(c.tm.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "openvino.tools.ovc.telemetry_stub"
