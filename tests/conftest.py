import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Tests never touch the user's real caches or models folder.
os.environ.setdefault("ANNOTATOR_CACHE_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"annotator-test-cache-{os.getpid()}"))
os.environ.setdefault("ANNOTATOR_MODELS_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"annotator-test-models-{os.getpid()}"))
# encoders run torch fp32 unless a test asks for a runtime (no background calibration)
os.environ.setdefault("ANNOTATOR_RUNTIME", "torch-fp32")
os.environ.setdefault("ANNOTATOR_RUNTIME_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"annotator-test-runtime-{os.getpid()}"))

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
# Test modules share helpers across folders (basenames are unique in the whole tree), so
# every test folder is importable whatever subset of the suite is collected first.
for _folder in sorted({p.parent for p in Path(__file__).parent.rglob("*.py")}):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))

import pytest  # noqa: E402

import hypothesis_profiles  # noqa: E402

hypothesis_profiles.load()   # derandomised under CI, random locally (see that module)


@pytest.fixture(scope="session")
def tiny_sam_model():
    from engines.hosts.tiny import tiny_sam
    return tiny_sam()


@pytest.fixture(scope="session")
def tiny_sam2_model():
    from engines.hosts.tiny import tiny_sam2
    return tiny_sam2()
