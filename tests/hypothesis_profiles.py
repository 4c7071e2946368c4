"""Hypothesis profiles: CI's verdict must never depend on a random draw.

Under CI (the environment variable CI set, as CI services do: CI=true) every property
test runs derandomised: the same examples on every run, chosen from the test's own
source. Locally the search stays random, so new examples keep being tried. Explicit
`settings(...)` objects in the tests inherit whichever profile is loaded here, which
conftest.py does before any test module is imported.
"""
from __future__ import annotations

import os
from typing import Mapping

from hypothesis import settings

CI_PROFILE, LOCAL_PROFILE = "ci", "local"

# Both from Hypothesis' own defaults, not from whatever is loaded now: Hypothesis loads
# its built-in "ci" profile by itself whenever a CI variable exists, even CI=false.
_BASE = settings.get_profile("default")
settings.register_profile(CI_PROFILE, _BASE, derandomize=True, database=None, print_blob=True)
settings.register_profile(LOCAL_PROFILE, _BASE, derandomize=False)


def running_in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def load() -> str:
    name = CI_PROFILE if running_in_ci() else LOCAL_PROFILE
    settings.load_profile(name)
    return name
