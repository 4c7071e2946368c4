"""The runtime folder in the user cache: converted OpenVINO models, the calibration
records and the runtimes that failed to convert an architecture (remembered, so the
failure costs one message, once).

Every file is written to a temporary name and renamed, so a crash or a quit leaves
either the old file or the new one. A converted model is a folder holding model.xml,
model.bin and meta.json (the key and both files' SHA-256): a folder whose files do
not match their hashes, or that OpenVINO cannot read, is deleted and converted again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from engines.runtime.encoders import import_openvino

log = logging.getLogger(__name__)
ENV_RUNTIME_DIR = "ANNOTATOR_RUNTIME_DIR"
MODEL_FILES = ("model.xml", "model.bin")


def default_runtime_dir() -> Path:
    override = os.environ.get(ENV_RUNTIME_DIR, "").strip()
    if override:
        return Path(override).expanduser()
    import platformdirs
    return Path(platformdirs.user_cache_dir("sam-annotator")) / "runtime"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        log.warning("runtime store: %s is unreadable; starting it afresh", path)
        return {}
    return data if isinstance(data, dict) else {}


class RuntimeStore:
    def __init__(self, directory: str | Path | None = None):
        self.dir = Path(directory) if directory is not None else default_runtime_dir()

    # --- converted models ---------------------------------------------------------------
    def model_dir(self, key: str) -> Path:
        return self.dir / "openvino" / hashlib.sha256(key.encode()).hexdigest()[:32]

    def blob_dir(self) -> Path:
        return self.dir / "openvino" / "compiled"

    def load_model(self, key: str):
        """The converted model stored under `key`, or None (absent or corrupt: removed)."""
        folder = self.model_dir(key)
        meta = _read_json(folder / "meta.json")
        if not meta:
            return None
        try:
            if meta.get("key") != key or any(_sha256(folder / n) != meta.get(n) for n in MODEL_FILES):
                raise ValueError("files do not match their recorded hashes")
            return import_openvino().Core().read_model(str(folder / "model.xml"))
        except Exception as exc:   # any damage means: convert again
            log.warning("runtime store: converted model %s is damaged (%s); converting again", folder, exc)
            shutil.rmtree(folder, ignore_errors=True)
            return None

    def save_model(self, key: str, model) -> Path:
        ov = import_openvino()
        folder = self.model_dir(key)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=folder.name + ".part"))
        try:
            ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=False)
            _write_json(tmp / "meta.json", {"key": key, **{n: _sha256(tmp / n) for n in MODEL_FILES}})
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    # --- failures -----------------------------------------------------------------------
    def failure(self, arch_key: str, runtime: str) -> str | None:
        return _read_json(self.dir / "failures.json").get(f"{arch_key}|{runtime}")

    def record_failure(self, arch_key: str, runtime: str, message: str) -> None:
        data = _read_json(self.dir / "failures.json")
        data[f"{arch_key}|{runtime}"] = message
        _write_json(self.dir / "failures.json", data)

    # --- calibration --------------------------------------------------------------------
    def calibration(self, arch_key: str, facts: dict) -> dict | None:
        """The record for `arch_key` if it was made under the same machine facts."""
        record = _read_json(self.dir / "calibration.json").get(arch_key)
        if not isinstance(record, dict) or record.get("facts") != facts:
            return None
        return record

    def save_calibration(self, arch_key: str, record: dict) -> None:
        data = _read_json(self.dir / "calibration.json")
        data[arch_key] = record
        _write_json(self.dir / "calibration.json", data)
