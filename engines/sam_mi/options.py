"""The options of a SAM-MI ("text") request, validated into a frozen dataclass; each bad
value is one OptionsError naming the option and its range.

`classes`: the typed names (a list of strings, or one string split at commas, periods
and semicolons), stripped, empty ones dropped, duplicates (case-insensitive) removed;
at least 1 and at most MAX_CLASSES (256, CAT-Seg's pad_len: above it the aggregator would
silently drop classes) a request. Names of any script are fine (CLIP's byte-level BPE);
each is at most MAX_NAME characters.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from engines.sam_mi.config import MAX_CLASSES, SAMPLING
from engines.auto.maps import option_number
from engines.types import OptionsError

MAX_NAME = 100
PROMPTERS = ("tspp", "grid")   # the TSPP's sparse points, or every point of the grid
_SPLIT = re.compile(r"[,.;\n]")


@dataclass(frozen=True)
class TextOptions:
    classes: tuple[str, ...] = ()
    sampling: str = "deterministic"       # TSPP points: top round(sum p), or "bernoulli"
    prompter: str = "tspp"                # "grid": SAM on the dense grid x grid (the baseline)
    seed: int = 0                         # Bernoulli sampling's seed
    temperature: float = 0.01             # training-free: softmax(S / tau) over the classes
    pred_iou_thresh: float = 0.88         # SAM masks kept (AMG defaults; SAM 2: 0.8)
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    points_per_batch: int = 64
    min_score: float = 0.0                # instances whose class probability is below are dropped
    keep_unassigned: bool = False         # SAM masks SMAgg gives no class, returned with class None
    max_instances: int = 500

    def updated(self, options: Mapping[str, Any] | None) -> TextOptions:
        if options is None:
            return self.checked()
        if not isinstance(options, Mapping):
            raise OptionsError(f"options must be a mapping of names to values, got {type(options).__name__}")
        known = {f.name: f.type for f in fields(self)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise OptionsError(f"unknown option(s) {', '.join(map(str, unknown))}; known: {', '.join(known)}")
        values = {}
        for name, value in options.items():
            kind = known[name]
            if name == "classes":
                values[name] = parse_classes(value)
            elif name == "sampling":
                if value not in SAMPLING:
                    raise OptionsError(f"sampling must be one of {', '.join(SAMPLING)}, got {value!r}")
                values[name] = value
            elif name == "prompter":
                if value not in PROMPTERS:
                    raise OptionsError(f"prompter must be one of {', '.join(PROMPTERS)}, got {value!r}")
                values[name] = value
            elif kind == "bool":
                if not isinstance(value, bool):
                    raise OptionsError(f"{name} must be true or false, got {value!r}")
                values[name] = value
            else:
                values[name] = option_number(name, value, kind == "int")
        return replace(self, **values).checked()

    def checked(self) -> TextOptions:
        if not self.classes:
            raise OptionsError("classes is empty: type at least one class name (e.g. \"car, person\")")
        if len(self.classes) > MAX_CLASSES:
            raise OptionsError(f"classes: at most {MAX_CLASSES} class names a request, got "
                               f"{len(self.classes)}; split the list into several requests")
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "min_score"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise OptionsError(f"{name} must be between 0 and 1, got {getattr(self, name):g}")
        if not 1e-4 <= self.temperature <= 10:
            raise OptionsError(f"temperature must be between 0.0001 and 10, got {self.temperature:g}")
        if self.points_per_batch < 1:
            raise OptionsError(f"points_per_batch must be an integer >= 1, got {self.points_per_batch}")
        if self.max_instances < 1:
            raise OptionsError(f"max_instances must be an integer >= 1, got {self.max_instances}")
        if self.seed < 0:
            raise OptionsError(f"seed must be an integer >= 0, got {self.seed}")
        return self


def parse_classes(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        items = _SPLIT.split(value)
    elif isinstance(value, (list, tuple)):
        if not all(isinstance(v, str) for v in value):
            raise OptionsError("classes must be a list of strings")
        items = list(value)
    else:
        raise OptionsError(f"classes must be a list of names or one comma-separated string, got "
                           f"{type(value).__name__}")
    seen, names = set(), []
    for item in items:
        name = " ".join(item.split())
        if not name:
            continue
        if len(name) > MAX_NAME:
            raise OptionsError(f"classes: a name is at most {MAX_NAME} characters, got {len(name)} "
                               f"({name[:30]!r}...)")
        if name.casefold() not in seen:
            seen.add(name.casefold())
            names.append(name)
    return tuple(names)
