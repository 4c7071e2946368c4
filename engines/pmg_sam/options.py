"""Options of a PMG-SAM proposal run (spec §4, §6 #11): the probability cut, the
connectivity and minimum area of the components that become instances, and a memory
bound on how many instances come back. Out-of-range values are one OptionsError."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from engines.types import OptionsError


@dataclass(frozen=True)
class PmgOptions:
    threshold: float = 0.5       # probability above which a pixel is foreground [choice]
    connectivity: int = 8        # 8- or 4-connected components [choice]
    min_area: int = 0            # components smaller than this (px) are dropped [paper: none]
    max_instances: int = 500     # best-scoring components kept (N x H x W masks come back); 0: all

    def updated(self, options: Mapping[str, Any] | None) -> PmgOptions:
        if options is None:
            return self
        if not isinstance(options, Mapping):
            raise OptionsError(f"options must be a mapping of names to values, got "
                               f"{type(options).__name__}")
        known = {f.name: f.type for f in fields(self)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise OptionsError(f"unknown option(s) {', '.join(map(str, unknown))}; known: "
                               f"{', '.join(known)}")
        values = {k: _number(k, v, known[k] == "int") for k, v in options.items()}
        return replace(self, **values).checked()

    def checked(self) -> PmgOptions:
        if not 0.0 < self.threshold < 1.0:
            raise OptionsError(f"threshold must be between 0 and 1 (exclusive), got {self.threshold:g}")
        if self.connectivity not in (4, 8):
            raise OptionsError(f"connectivity must be 4 or 8, got {self.connectivity}")
        if self.min_area < 0:
            raise OptionsError(f"min_area must be an integer >= 0, got {self.min_area}")
        if self.max_instances < 0:
            raise OptionsError(f"max_instances must be an integer >= 0 (0: all), got {self.max_instances}")
        return self


def _number(name: str, value: Any, integer: bool) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OptionsError(f"{name} must be a finite number, got {value!r}")
    if integer:
        if value != int(value):
            raise OptionsError(f"{name} must be a whole number, got {value!r}")
        return int(value)
    return float(value)
