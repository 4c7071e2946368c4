"""`annotator autolabel --engine pmg-sam / ip-sam` on a models folder of tiny real files:
each wrong or missing file is one line naming it, exit status 2, the project unchanged;
awkward images (blank, tiny, a 20 x 2000 strip) are answered, a blank one with nothing."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from annotator.cli import main
from annotator.core.store import Project
from engines.files import catalogue
from engines.files.plugin_meta import HEADER_KEY
from engines.files.plugins import save_plugin
from ip_sam_helpers import write_ip_plugin, write_sam2
from pmg_helpers import install_pmg, patch_tiny_u2net, write_hiera, write_plugin, write_u2net


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_project(tmp_path: Path, sizes) -> Path:
    root = tmp_path / "images"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, (h, w) in sizes.items():
        pixels = np.full((h, w, 3), 128, np.uint8) if name == "blank" else \
            rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{name}.png")
    path = tmp_path / "p.annot"
    with Project.create(path, root) as p:
        p.scan_folder()
    return path


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATOR_CACHE_DIR", str(tmp_path / "cache"))
    patch_tiny_u2net(monkeypatch)
    models = tmp_path / "models"
    project = make_project(tmp_path, {"photo": (48, 60)})
    return models, project


def autolabel(models: Path, project: Path, engine: str, capsys) -> tuple[int, str]:
    before = digest(project)
    code = main(["autolabel", "--project", str(project), "--engine", engine,
                 "--models-dir", str(models), "--device", "cpu", "--no-cache"])
    err = capsys.readouterr().err.strip()
    if code == 2:
        assert digest(project) == before and "\n" not in err and "Traceback" not in err, err
        assert err.startswith("annotator autolabel: error:"), err
    return code, err


# -- PMG-SAM ---------------------------------------------------------------------------

def test_pmg_sam_missing_hiera_or_u2net_file_is_named(env, capsys):
    """(two runs in one process: the first one's failure must release the project)"""
    models, project = env
    for missing, name in (("hiera", "hiera_base_plus_224.mae.safetensors"), ("u2net", "u2net.pth")):
        folder = models / missing
        install_pmg(folder, **{missing: False})
        code, err = autolabel(folder, project, "pmg-sam", capsys)
        assert code == 2 and f"pmg-sam: backbone file missing: no {name}" in err, err


def test_pmg_sam_wrong_hiera_file_is_named(env, capsys):
    """A Hiera file that is not the one the plugin was trained on (replaced by another)."""
    models, project = env
    files = install_pmg(models)
    write_hiera(files["hiera"], seed=7)
    code, err = autolabel(models, project, "pmg-sam", capsys)
    assert code == 2, err
    assert (f"pmg-sam: no trained plugin with its backbone in {models}" in err
            and f"pmg.safetensors was trained on another backbone file than {files['hiera'].name}"
            in err), err


def test_pmg_sam_plugin_for_another_u2net_file_is_named(env, capsys):
    models, project = env
    files = install_pmg(models)
    write_u2net(files["u2net"], tag=b"another u2net")
    code, err = autolabel(models, project, "pmg-sam", capsys)
    assert code == 2 and f"plugin {files['plugin']} was trained for another backbone: its U²-Net " \
        f"file had identity" in err and f"but {files['u2net']} has" in err, err


def test_pmg_sam_unreadable_hiera_file_is_named(env, capsys):
    """A damaged Hiera file the plugin claims (its identity recorded): the loader names it."""
    models, project = env
    files = install_pmg(models, plugin=False)
    files["hiera"].write_bytes(b"\x00" * 64)
    write_plugin(models / "plugins" / "pmg-sam" / "pmg.safetensors", files["hiera"], files["u2net"])
    code, err = autolabel(models, project, "pmg-sam", capsys)
    assert code == 2 and f"Hiera file {files['hiera']} is not a readable safetensors file" in err, err


def test_pmg_sam_answers_blank_tiny_and_elongated_images(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ANNOTATOR_CACHE_DIR", str(tmp_path / "cache"))
    patch_tiny_u2net(monkeypatch)
    models = tmp_path / "models"
    install_pmg(models)
    project = make_project(tmp_path, {"blank": (40, 50), "tiny": (7, 5), "strip": (20, 2000),
                                      "tall": (2000, 20)})
    code = main(["autolabel", "--project", str(project), "--engine", "pmg-sam",
                 "--models-dir", str(models), "--device", "cpu", "--no-cache"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "pmg-sam: 4 image(s) labelled" in out.out, out.out
    with Project.open(project, read_only=True) as p:
        runs = {p.image(r.image_id).file_name: r for r in p.proposal_runs()}
        assert {name: r.outcome for name, r in runs.items()} == dict.fromkeys(
            ("blank.png", "tiny.png", "strip.png", "tall.png"), "done")
        blank = next(i for i in p.images() if i.file_name == "blank.png")
        assert p.candidates(blank.id) == []


# -- IP-SAM ----------------------------------------------------------------------------

@pytest.fixture
def ip_env(env, monkeypatch):
    """The tiny SAM 2 installed under the catalogue's SAM 2.1 Hiera-T name (the router
    finds catalogued host checkpoints only), and a plugin trained on it."""
    models, project = env
    entry = catalogue.get_entry("sam2.1-hiera-t")
    sam2 = write_sam2(catalogue.model_path(entry, models))
    monkeypatch.setattr(catalogue, "is_installed", lambda e, d=None: catalogue.model_path(e, d).exists())
    plugins = models / "plugins" / "ip-sam"
    return models, project, sam2, plugins


def test_ip_sam_runs_and_a_blank_image_gives_nothing(ip_env, tmp_path, capsys):
    models, _, sam2, plugins = ip_env
    write_ip_plugin(plugins / "ip.safetensors", sam2)
    project = make_project(tmp_path / "second", {"blank": (40, 50), "photo": (48, 60)})
    code = main(["autolabel", "--project", str(project), "--engine", "ip-sam",
                 "--models-dir", str(models), "--device", "cpu", "--no-cache"])
    out = capsys.readouterr()
    assert code == 0 and "ip-sam: 2 image(s) labelled" in out.out, out.err
    with Project.open(project, read_only=True) as p:
        blank = next(i for i in p.images() if i.file_name == "blank.png")
        assert p.candidates(blank.id) == []


def _rewrite_meta(path: Path, **changes) -> Path:
    """The same tensors with some metadata changed (what another run would have written)."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()[HEADER_KEY])
        state = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(changes)
    for key in ("format", "version", "created"):
        meta.pop(key, None)
    path.unlink()
    return save_plugin(path, state, **meta)


def test_ip_sam_plugin_for_another_sam2_size_is_named(ip_env, capsys):
    models, project, sam2, plugins = ip_env
    plugin = _rewrite_meta(write_ip_plugin(plugins / "ip.safetensors", sam2), backbone_arch="sam2:hiera_l")
    code, err = autolabel(models, project, "ip-sam", capsys)
    assert code == 2 and f"plugin {plugin} was trained for SAM 2 'sam2:hiera_l', but checkpoint " \
        f"{sam2} is 'sam2:tiny'" in err, err


def test_ip_sam_plugin_for_another_sam2_checkpoint_is_named(ip_env, tmp_path, capsys):
    models, project, sam2, plugins = ip_env
    other = write_sam2(tmp_path / "other_sam2.pt", seed=4)
    write_ip_plugin(plugins / "ip.safetensors", other)
    code, err = autolabel(models, project, "ip-sam", capsys)
    assert code == 2, err
    assert "ip-sam: no trained plugin with its backbone" in err and \
        f"ip.safetensors was trained on another backbone file than {sam2.name}" in err, err


def test_ip_sam_lora_rank_that_its_tensors_contradict_is_named(ip_env, capsys):
    from engines.ip_sam import IpSamConfig
    models, project, sam2, plugins = ip_env
    config = IpSamConfig.tiny(lora_rank=8).to_dict()
    plugin = _rewrite_meta(write_ip_plugin(plugins / "ip.safetensors", sam2), config=config)
    code, err = autolabel(models, project, "ip-sam", capsys)
    assert code == 2 and f"plugin {plugin}: its metadata says LoRA rank 8, but its tensors" in err, err


@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_ip_sam_truncated_plugin_is_named(ip_env, capsys, keep):
    models, project, sam2, plugins = ip_env
    plugin = write_ip_plugin(plugins / "ip.safetensors", sam2)
    data = plugin.read_bytes()
    plugin.write_bytes(data[:int(len(data) * keep)])
    code, err = autolabel(models, project, "ip-sam", capsys)
    assert code == 2 and f"plugin {plugin} is truncated" in err, err


def test_ip_sam_sam2_file_that_is_no_sam2_is_named(ip_env, capsys):
    """A SAM (v1) state dict where the SAM 2.1 file should be, with a plugin claiming it."""
    from engines.hosts.tiny import tiny_sam
    models, project, sam2, plugins = ip_env
    torch.save(tiny_sam().state_dict(), sam2)
    write_ip_plugin(plugins / "ip.safetensors", sam2)
    code, err = autolabel(models, project, "ip-sam", capsys)
    assert code == 2 and f"checkpoint {sam2} is not a SAM 2.1 checkpoint, which ip-sam needs" in err, err


@pytest.mark.parametrize("engine", ["pmg-sam", "ip-sam"])
def test_segment_says_a_promptless_engine_takes_no_clicks(env, tmp_path, capsys, engine):
    """`annotator segment` is the click command: a promptless engine there is one line, exit 2."""
    models, _ = env
    install_pmg(models)
    image = tmp_path / "images" / "photo.png"
    code = main(["segment", str(image), "--point", "5,5", "--engine", engine,
                 "--models-dir", str(models), "--no-cache"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and f"{engine}: does not answer points prompts" in err and "\n" not in err, err
