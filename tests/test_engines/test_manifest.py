"""engines/manifest.py: the one table of engine facts, torch-free, and nothing else in
the product naming engines in lists of its own."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from engines import manifest
from engines.registry import all_specs, get_spec
from engines.types import EngineError

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("annotator", "engines", "training", "bench", "scripts")
ROUTED_ONLY: set[str] = set()     # routed to, not built yet (none now)
# Collections that name engines but are not engine facts, each with its reason:
ALLOWED = {
    # the latency goals each plugin's issue set: benchmark data
    ("bench/_plugin_report.py", frozenset({"stable-sam", "hq-sam"})),
    # checkpoint file families (what a state dict is), which share names with engines
    ("engines/hosts/detect.py", frozenset({"sam", "sam2", "hq-sam"})),
    ("engines/hq_sam/engine.py", frozenset({"sam", "hq-sam"})),
    # the host package's module names (engines/hosts/sam.py, sam2.py)
    ("engines/hosts/__init__.py", frozenset({"sam", "sam2"})),
}


def test_importing_the_manifest_and_the_picker_inputs_loads_no_torch():
    code = ("import sys; import engines, engines.manifest, engines.files.catalogue, "
            "annotator.core.training_job, annotator.core.models; "
            "from engines.files import ModelEntry; engines.manifest.list_engines(task='auto'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


def test_every_row_resolves_to_its_factory_and_names_what_it_answers():
    for spec in all_specs():
        assert spec.factory.__name__ == spec.info.factory
        assert spec.tasks and spec.tasks <= set(manifest.TASKS)
        assert spec.description and "\n" not in spec.description
        for host in spec.plugin_hosts:
            assert manifest.get(host) is not None, (spec.name, host)
    with pytest.raises(EngineError, match="unknown engine 'nope'; known: classic"):
        get_spec("nope")


def test_filters():
    names = lambda rows: [r.name for r in rows]   # noqa: E731
    assert names(manifest.list_engines(trainable=True)) == ["hq-sam", "stable-sam", "pmg-sam", "ip-sam"]
    assert "classic" not in names(manifest.list_engines(choosable=True))
    assert set(names(manifest.list_engines(catalogued=True))) >= {"sam", "sam2", "hq-sam", "pmg-sam"}
    assert set(manifest.plugin_host_engines()) == {"sam", "sam2"}
    assert all("auto" in r.tasks for r in manifest.list_engines(task="auto"))


def test_routes_name_only_known_engines_and_end_points_at_classic():
    known = set(manifest.names()) | ROUTED_ONLY
    for (task, _fine), chain in manifest.ROUTES.items():
        assert set(chain) <= known, (task, set(chain) - known)
        if task in ("points", "box"):
            assert chain[-1] == "classic"


def _engine_name_collections(tree: ast.AST, names: set[str]):
    for node in ast.walk(tree):
        items = []
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [k for k in node.keys if k is not None]
        found = [e.value for e in items if isinstance(e, ast.Constant) and e.value in names]
        if len(found) >= 2:
            yield node.lineno, found


def test_no_engine_name_lists_outside_the_manifest():
    """Engine facts live in one table: a tuple, list, set or dict naming two or more
    engines anywhere else in the product is a second copy that will go stale."""
    names = set(manifest.names()) | ROUTED_ONLY
    offenders = []
    for package in PRODUCT:
        for path in sorted((REPO / package).rglob("*.py")):
            if path == REPO / "engines" / "manifest.py":
                continue
            for line, found in _engine_name_collections(ast.parse(path.read_text()), names):
                if (str(path.relative_to(REPO)), frozenset(found)) not in ALLOWED:
                    offenders.append(f"{path.relative_to(REPO)}:{line} {found}")
    assert not offenders, "engine names listed outside engines/manifest.py:\n" + "\n".join(offenders)


def test_the_grep_finds_a_copy():
    tree = ast.parse('CHOOSABLE = ("sam", "sam2")\nOK = ("sam", "vit_b")\n')
    assert [line for line, _ in _engine_name_collections(tree, {"sam", "sam2"})] == [1]


def test_product_code_imports_engine_packages_only_through_their_public_surface():
    """annotator/, training/ and bench/ import `engines.<package>`, never a module inside
    one (engines.hosts.fast.decoder, ...): each package's __init__ is its contract."""
    packages = {p.name for p in (REPO / "engines").iterdir() if (p / "__init__.py").exists()}
    offenders = []
    for package in ("annotator", "training", "bench", "scripts"):
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                mods = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                    [a.name for a in node.names] if isinstance(node, ast.Import) else []
                for mod in mods:
                    parts = mod.split(".")
                    if parts[0] == "engines" and len(parts) > 2 and parts[1] in packages:
                        offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {mod}")
    assert not offenders, "\n".join(offenders)


def test_eval_baselines_come_from_the_table_and_follow_the_checkpoint_family():
    """`annotator eval` reads an auto engine's baselines here; a SAM file swaps each for
    its counterpart on SAM (sam2-amg -> sam-amg), and a malformed row is refused."""
    import dataclasses
    for info in manifest.list_engines(task="auto"):
        for engine, protocol in manifest.eval_baselines(info.name):
            assert manifest.get(engine) is not None and protocol in manifest.EVAL_PROTOCOLS
    pmg = manifest.eval_baselines("pmg-sam")
    assert {e for e, _ in pmg} == {"sam2-amg"} and {p for _, p in pmg} == {"top-score", "oracle"}
    assert manifest.eval_baselines("pmg-sam", "sam") == [("sam-amg", p) for _, p in pmg]
    assert manifest.eval_baselines("ip-sam") == [("sam2", "null"), ("sam2", "centroid-point"),
                                                 ("sam2-amg", "top-score")]
    with pytest.raises(ValueError, match="no counterpart on a classic checkpoint"):
        manifest.eval_baselines("pmg-sam", "classic")
    row = manifest.get("pmg-sam")
    for bad in (("sam2-amg:best",), ("nope:top-score",), ("sam2-amg",)):
        with pytest.raises(ValueError, match="is not ENGINE:PROTOCOL"):
            manifest._check([dataclasses.replace(row, eval_baselines=bad)])
    with pytest.raises(ValueError, match="eval metrics"):
        manifest._check([dataclasses.replace(row, eval_metrics=("dis", "psnr"))])
