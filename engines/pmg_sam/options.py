"""Options of a PMG-SAM proposal run (spec §4, §6 #11): the probability cut, the
connectivity and minimum area of the components that become instances, and a memory
bound on how many instances come back. Out-of-range values are one OptionsError. The
fields and their checks are the map proposers' shared ones (engines/auto/maps.py)."""
from __future__ import annotations

from dataclasses import dataclass

from engines.auto.maps import MapOptions


@dataclass(frozen=True)
class PmgOptions(MapOptions):
    """threshold 0.5, 8-connected, no minimum area [paper: none], at most 500 instances."""
