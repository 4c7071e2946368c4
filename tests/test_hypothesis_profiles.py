"""CI runs every property test derandomised; locally the search stays random."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from hypothesis_profiles import CI_PROFILE, LOCAL_PROFILE, running_in_ci

TESTS = Path(__file__).resolve().parent


def test_the_active_profile_follows_the_ci_variable():
    assert settings.default.derandomize is running_in_ci()
    assert settings.get_profile(CI_PROFILE).derandomize is True
    assert settings.get_profile(LOCAL_PROFILE).derandomize is False


@pytest.mark.parametrize("ci, expected", [("true", True), ("1", True), (None, False),
                                          ("", False), ("false", False)])
def test_the_fuzz_settings_inherit_the_profile(ci, expected):
    # a fresh interpreter, as CI starts one: conftest's profile, then the fuzz module's
    # own settings object (max_examples=200 ...) must still be derandomised under CI
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    fuzz = next(TESTS.rglob("test_format_fuzz.py"))      # wherever the tests are filed
    code = ("import sys; sys.path[:0] = [%r, %r, %r]; import conftest, test_format_fuzz as f; "
            "print(f.SETTINGS.derandomize, conftest.hypothesis_profiles.running_in_ci())"
            % (str(fuzz.parent), str(TESTS), str(TESTS.parent)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=TESTS, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(expected), str(expected)]
