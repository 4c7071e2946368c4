"""`import training` is ours however the product is launched, the layers hold, and the
package ships what it needs (catalogue, sample photos)."""
import importlib.metadata as md
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def _training_file(cwd, *args, env=None):
    out = subprocess.run([PY, *args, "-c", "import training, sys; print(training.__file__)"],
                         cwd=cwd, capture_output=True, text=True, check=True, env=env)
    return Path(out.stdout.strip()).resolve()


def test_training_is_ours_in_process():
    import training
    assert Path(training.__file__).resolve() == REPO / "training" / "__init__.py"


def test_training_is_ours_from_another_folder(tmp_path):
    # the installed (editable) package, started from anywhere
    assert _training_file(tmp_path) == REPO / "training" / "__init__.py"


def test_training_is_ours_from_the_repo_root():
    assert _training_file(REPO) == REPO / "training" / "__init__.py"


def test_no_other_distribution_ships_a_training_package():
    owners = set()
    for dist in md.distributions():
        top = (dist.read_text("top_level.txt") or "").split()
        files = [str(f) for f in (dist.files or [])]
        if "training" in top or any(f.startswith("training/") for f in files):
            owners.add(dist.metadata["Name"])
    assert owners <= {"sam-annotator"}, f"another distribution installs `training`: {owners}"


def test_sam2_module_comes_without_a_training_package():
    import sam2
    assert not (Path(sam2.__file__).parents[1] / "training").exists() or \
        (Path(sam2.__file__).parents[1] / "training").resolve() == REPO / "training"


@pytest.mark.slow
def test_wheel_contains_our_packages_and_resources(tmp_path):
    subprocess.run([PY, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for must in ("training/__init__.py", "engines/hosts/sam.py", "annotator/cli.py",
                 "resources/models.json", "resources/samples/coffee.png"):
        assert must in names, must
    # the wheel installed into a bare target is importable with our training package
    target = tmp_path / "site"
    subprocess.run([PY, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    out = subprocess.run([PY, "-S", "-c", "import sys; sys.path.insert(0, sys.argv[1]); import training; print(training.__file__)",
                          str(target)], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()).resolve() == (target / "training" / "__init__.py").resolve()


def test_layer_contracts_hold():
    """engines/core/training never import Qt, the UI never imports torch (import-linter)."""
    lint = Path(PY).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
