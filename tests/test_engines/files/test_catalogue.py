"""engines.files.catalogue: the shipped models.json, lookups, the models folder, verification."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from pathlib import Path

import platformdirs
import pytest

from engines.files import catalogue
from engines.files.catalogue import CatalogueError, ModelEntry
from engines.types import CheckpointError, EngineError

SHIPPED = Path(__file__).resolve().parents[3] / "resources" / "models.json"
ARCH_ORDER = {"sam": ["vit_b", "vit_l", "vit_h"],
              "sam2": ["hiera_t", "hiera_s", "hiera_b+", "hiera_l"],
              "hq-sam": ["vit_tiny", "vit_b", "vit_l", "vit_h"],
              "pmg-sam": ["hiera_b+", "u2net"],     # two frozen files, both needed
              "sam-mi": ["clip_vit_b16"]}           # CLIP beside the SAM file


# --- the shipped catalogue ------------------------------------------------------------------

def test_shipped_catalogue_is_well_formed():
    entries = catalogue.load_catalogue()
    assert len(entries) == 14
    assert len({e.name for e in entries}) == len(entries)
    assert len({e.filename for e in entries}) == len(entries)
    for e in entries:
        assert e.url.startswith("https://"), e.name
        if e.engine != "pmg-sam":      # its publishers' addresses name no file (see below)
            assert e.url.endswith("/" + e.filename), e.name
        assert e.engine in {"sam", "sam2", "hq-sam", "pmg-sam", "sam-mi"}
        assert e.license in ("Apache-2.0", "CC-BY-NC-4.0", "MIT") and e.description
        assert e.size is None or e.size > 10_000_000
        if e.size is None or not e.has_hash:
            assert e.note, f"{e.name}: a missing size or hash must be explained"
    # Within an engine: small to large (the router takes the first installed one).
    for engine, order in ARCH_ORDER.items():
        assert [e.arch for e in entries if e.engine == engine] == order
        sizes = [e.size for e in entries if e.engine == engine and e.size is not None]
        assert sizes == sorted(sizes)


def test_shipped_urls_and_hashes_follow_the_publishers():
    entries = {e.name: e for e in catalogue.load_catalogue()}
    for arch in ("b", "l", "h"):
        e = entries[f"sam-vit-{arch}"]
        assert e.url.startswith("https://dl.fbaipublicfiles.com/segment_anything/")
        # SAM 1 names end in the first 6 hex digits of the file's MD5 (not its SHA-256).
        assert re.fullmatch(rf"sam_vit_{arch}_([0-9a-f]{{6}})\.pth", e.filename)
        assert e.md5.startswith(e.filename[-10:-4]) and len(e.sha256) == 64
    for e in entries.values():
        if e.engine == "sam2":
            assert e.url.startswith("https://dl.fbaipublicfiles.com/segment_anything_2/092824/")
        if e.engine == "hq-sam":
            assert e.url.startswith("https://huggingface.co/lkeab/hq-sam/resolve/main/")
        if e.engine == "sam-mi":   # OpenAI's address names the file's SHA-256 (open_clip's table)
            assert e.url.startswith("https://openaipublic.azureedge.net/clip/models/")
            assert e.url.split("/")[-2] == e.sha256 and e.filename == "ViT-B-16.pt"
    # PMG-SAM's frozen branches: timm's hub file, and the Google Drive file the U-2-Net
    # README links (neither publisher gives an exact size or a hash: the notes say so)
    hiera, u2net = entries["pmg-sam-hiera-b+"], entries["pmg-sam-u2net"]
    assert hiera.url == "https://huggingface.co/timm/hiera_base_plus_224.mae/resolve/main/model.safetensors"
    assert hiera.filename.endswith(".safetensors") and hiera.license == "CC-BY-NC-4.0"
    assert u2net.filename == "u2net.pth" and "1ao1ovG1Qtx4b7EoskHXmi2E9rp5CHLcZ" in u2net.url
    assert "176" in u2net.description and u2net.license == "Apache-2.0"
    for e in (hiera, u2net):
        assert e.size is None and not e.has_hash and "unverified" in e.note


def test_sam2_configs_exist_in_the_installed_sam2_package():
    spec = importlib.util.find_spec("sam2")      # locates the package without importing it
    if spec is None:
        pytest.skip("sam2 is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    configs = [e.config for e in catalogue.load_catalogue() if e.engine == "sam2"]
    assert len(configs) == 4
    for config in configs:
        assert (root / config).is_file(), config


# --- malformed catalogues -------------------------------------------------------------------

GOOD = {"name": "x-1", "engine": "sam", "arch": "vit_b", "filename": "x.pth",
        "url": "https://example.org/x.pth", "size": 10, "sha256": None, "sha256_prefix": None,
        "license": "MIT", "description": "d"}


def write_catalogue(tmp_path: Path, models) -> Path:
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": models}), encoding="utf-8")
    return path


@pytest.mark.parametrize("change, message", [
    ({"url": "http://example.org/x.pth"}, "https://"),
    ({"engine": "yolo"}, "engine 'yolo'"),
    ({"filename": "../x.pth"}, "plain file name"),
    ({"size": -5}, "size must be"),
    ({"size": "10"}, "size must be"),
    ({"sha256": "abc"}, "64 hex digits"),
    ({"sha256": "A" * 64}, "lowercase hex"),
    ({"sha256": "a" * 64, "sha256_prefix": "b" * 6}, "does not match"),
    ({"md5": "z" * 32}, "md5"),
    ({"engine": "sam2"}, "needs 'config'"),
    ({"description": ""}, "'description'"),
    ({"colour": "red"}, "unknown field"),
])
def test_bad_entries_are_named_with_their_problem(tmp_path, change, message):
    path = write_catalogue(tmp_path, [{**GOOD, **change}])
    with pytest.raises(CatalogueError, match=re.escape(message)) as info:
        catalogue.load_catalogue(path)
    assert "x-1" in str(info.value)


def test_malformed_files(tmp_path):
    bad_json = tmp_path / "a.json"
    bad_json.write_text("{not json", encoding="utf-8")
    with pytest.raises(CatalogueError, match="not valid JSON"):
        catalogue.load_catalogue(bad_json)
    with pytest.raises(CatalogueError, match="'models' list"):
        catalogue.load_catalogue(write_catalogue(tmp_path, []))
    with pytest.raises(CatalogueError, match="name 'x-1' appears twice"):
        catalogue.load_catalogue(write_catalogue(tmp_path, [GOOD, {**GOOD, "filename": "y"}]))
    with pytest.raises(CatalogueError, match="cannot read"):
        catalogue.load_catalogue(tmp_path / "missing.json")
    assert catalogue.load_catalogue(write_catalogue(tmp_path, [GOOD]))[0].size == 10


def test_get_entry_lists_known_names_when_unknown():
    assert catalogue.get_entry("sam2.1-hiera-t").config == "configs/sam2.1/sam2.1_hiera_t.yaml"
    with pytest.raises(EngineError, match="unknown model 'sam-vit-x'.*sam-vit-b.*hq-sam-vit-h"):
        catalogue.get_entry("sam-vit-x")


# --- the models folder ----------------------------------------------------------------------

def test_models_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv(catalogue.ENV_MODELS_DIR, raising=False)
    default = Path(platformdirs.user_data_dir("sam-annotator")) / "models"
    assert catalogue.models_dir() == default
    monkeypatch.setenv(catalogue.ENV_MODELS_DIR, str(tmp_path / "env"))
    assert catalogue.models_dir() == tmp_path / "env"
    assert catalogue.models_dir(tmp_path / "flag") == tmp_path / "flag"
    assert catalogue.models_dir(str(tmp_path / "flag")) == tmp_path / "flag"
    monkeypatch.setenv(catalogue.ENV_MODELS_DIR, "")
    assert catalogue.models_dir() == default


def entry(name, arch, size, data=None, **kw):
    return ModelEntry(name=name, engine=kw.pop("engine", "sam"), arch=arch,
                      filename=f"{name}.pth", url=f"https://example.org/{name}.pth", size=size,
                      sha256=hashlib.sha256(data).hexdigest() if data else None, **kw)


def test_installed_and_find_checkpoint_prefer_small(tmp_path):
    small, large = entry("s", "vit_b", 4), entry("l", "vit_h", 6)
    other = entry("t", "hiera_t", None, engine="sam2", config="c.yaml")
    entries = [small, large, other]
    assert catalogue.find_checkpoint("sam", directory=tmp_path, entries=entries) is None
    (tmp_path / "l.pth").write_bytes(b"123456")
    (tmp_path / "s.pth").write_bytes(b"12")              # incomplete: size is known
    (tmp_path / "t.pth").write_bytes(b"x")               # size unknown: any non-empty file
    assert [e.name for e, _ in catalogue.installed(tmp_path, entries)] == ["l", "t"]
    assert catalogue.find_checkpoint("sam", directory=tmp_path, entries=entries) \
        == (large, tmp_path / "l.pth")
    (tmp_path / "s.pth").write_bytes(b"1234")
    assert catalogue.find_checkpoint("sam", directory=tmp_path, entries=entries)[0] is small
    assert catalogue.find_checkpoint("sam", "vit_h", tmp_path, entries)[0] is large
    with pytest.raises(EngineError, match="no catalogued arch 'vit_q'"):
        catalogue.find_checkpoint("sam", "vit_q", tmp_path, entries)
    with pytest.raises(EngineError, match="engine 'yolo'"):
        catalogue.find_checkpoint("yolo", directory=tmp_path, entries=entries)


def test_shipped_entry_is_installed_at_its_exact_size(tmp_path, monkeypatch):
    monkeypatch.setenv(catalogue.ENV_MODELS_DIR, str(tmp_path))
    tiny = catalogue.get_entry("sam2.1-hiera-t")
    with open(tmp_path / tiny.filename, "wb") as fh:   # sparse: no real 156 MB written
        fh.truncate(tiny.size - 1)
    assert catalogue.find_checkpoint("sam2") is None
    with open(tmp_path / tiny.filename, "r+b") as fh:
        fh.truncate(tiny.size)
    assert catalogue.find_checkpoint("sam2") == (tiny, tmp_path / tiny.filename)
    assert catalogue.installed() == [(tiny, tmp_path / tiny.filename)]


# --- verify ---------------------------------------------------------------------------------

def test_verify(tmp_path):
    data = b"checkpoint bytes" * 1000
    path = tmp_path / "m.pth"
    path.write_bytes(data)
    sha, md5 = hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()
    seen = []
    catalogue.verify(entry("m", "vit_b", len(data), data, md5=md5), path,
                     progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (len(data), len(data))
    catalogue.verify(entry("m", "vit_b", None, sha256_prefix=sha[:6]), path)

    with pytest.raises(CheckpointError, match=f"m.pth: size is {len(data)} bytes, expected 5"):
        catalogue.verify(entry("m", "vit_b", 5, data), path)
    wrong = entry("m", "vit_b", len(data), b"other bytes")
    with pytest.raises(CheckpointError) as info:
        catalogue.verify(wrong, path)
    assert "m.pth" in str(info.value) and sha in str(info.value) and wrong.sha256 in str(info.value)
    with pytest.raises(CheckpointError, match=f"MD5 is {md5}, expected {'0' * 32}"):
        catalogue.verify(entry("m", "vit_b", None, md5="0" * 32), path)
    with pytest.raises(CheckpointError, match="starting with 000000"):
        catalogue.verify(entry("m", "vit_b", None, sha256_prefix="000000"), path)
    with pytest.raises(CheckpointError, match="not found"):
        catalogue.verify(wrong, tmp_path / "absent.pth")


# --- the command line without any network ---------------------------------------------------

@pytest.fixture
def main(monkeypatch):
    from annotator import cli
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("annotator.commands.models",))
    return cli.main


def test_cli_list_and_path_use_flag_over_env(tmp_path, monkeypatch, capsys, main):
    env_dir, flag_dir = tmp_path / "env", tmp_path / "flag"
    monkeypatch.setenv(catalogue.ENV_MODELS_DIR, str(env_dir))
    tiny = catalogue.get_entry("sam2.1-hiera-t")
    for folder in (env_dir, flag_dir):
        folder.mkdir()
        with open(folder / tiny.filename, "wb") as fh:
            fh.truncate(tiny.size)
    assert main(["models", "path", "sam2.1-hiera-t"]) == 0
    assert capsys.readouterr().out.strip() == str(env_dir / tiny.filename)
    assert main(["models", "--models-dir", str(flag_dir), "path", "sam2.1-hiera-t"]) == 0
    assert capsys.readouterr().out.strip() == str(flag_dir / tiny.filename)
    assert main(["models", "path", "sam2.1-hiera-t", "--models-dir", str(flag_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(flag_dir / tiny.filename)

    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1 + 14 + 1
    assert re.search(r"pmg-sam-hiera-b\+\s+pmg-sam\s+hiera_b\+\s+\?\s+no\s+.*hiera_base_plus_224.mae.safetensors", out)
    assert re.search(r"pmg-sam-u2net\s+pmg-sam\s+u2net\s+\?\s+no\s+.*u2net.pth", out)
    assert re.search(r"sam2.1-hiera-t\s+sam2\s+hiera_t\s+156\s+yes", out)
    assert re.search(r"sam-vit-h\s+sam\s+vit_h\s+2565\s+no", out)
    assert re.search(r"hq-sam-vit-b\s+hq-sam\s+vit_b\s+\?\s+no", out)
    assert f"models folder: {env_dir}" in out

    assert main(["models", "path", "sam-vit-b"]) == 1
    assert "annotator models download sam-vit-b" in capsys.readouterr().err
    assert main(["models", "path", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["models"]) == 2
