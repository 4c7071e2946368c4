"""Proposals -> candidates: the score threshold, the minimum area, and suppression
against what the image already holds.

A proposal that overlaps an annotation (accepted or drawn), a pending candidate or a
rejected one above `suppress_iou` is dropped and counted as a duplicate: existing work
is never replaced, a re-run never adds a second copy, and a rejected proposal stays
rejected. Proposals are also suppressed against each other, best score first.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from annotator.core import geometry
from annotator.core.dataset import CandidateRecord
from annotator.core.errors import InputError


@dataclass(frozen=True)
class CandidateOptions:
    threshold: float = 0.0      # keep proposals scoring at least this (scores are in [0, 1])
    min_area: int = 0           # pixels
    suppress_iou: float = 0.5   # overlap with existing work above this: a duplicate

    def checked(self) -> CandidateOptions:
        for name in ("threshold", "suppress_iou"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise InputError(f"{name.replace('_', ' ')} {value!r} is not a number in [0, 1]")
        if not isinstance(self.min_area, int) or isinstance(self.min_area, bool) \
                or self.min_area < 0:
            raise InputError(f"minimum area {self.min_area!r} is not a whole number of pixels >= 0")
        return self

    def settings(self) -> dict[str, Any]:
        return {"threshold": float(self.threshold), "min_area": int(self.min_area),
                "suppress_iou": float(self.suppress_iou)}


@dataclass
class Conversion:
    candidates: list[CandidateRecord] = field(default_factory=list)
    below_threshold: int = 0
    too_small: int = 0
    duplicates: int = 0


@dataclass
class EncodedProposals:
    """Proposals with their masks as COCO RLEs: small enough to send between processes
    (batch ranks) and what the store keeps anyway."""
    engine: str
    rles: list[dict] = field(default_factory=list)
    areas: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    sources: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rles)


def encode_proposals(proposals: Any) -> EncodedProposals:
    """An `engines.types.Proposals` as RLEs, best score first (empty masks dropped)."""
    out = EncodedProposals(str(proposals.engine))
    names = list(proposals.class_names or [])
    sources = list(proposals.sources or [])
    order = np.argsort(-np.asarray(proposals.scores, dtype=np.float64), kind="stable")
    for i in order:
        mask = np.asarray(proposals.masks[i], dtype=bool)
        area = int(mask.sum())
        if area == 0:
            continue
        out.rles.append(geometry.mask_to_rle(mask))
        out.areas.append(area)
        out.scores.append(float(np.clip(proposals.scores[i], 0.0, 1.0)))
        out.labels.append(str(names[i]) if i < len(names) and names[i] else "")
        out.sources.append(_plain(sources[i]) if i < len(sources) and sources[i] else {})
    return out


def proposals_to_candidates(proposals: EncodedProposals, existing_rles: Sequence[dict],
                            options: CandidateOptions, provenance: dict[str, Any]) -> Conversion:
    """Candidates (not yet stored) from encoded proposals; `existing_rles` are the
    image's annotations and candidates (pending and rejected) as COCO RLEs.
    `provenance` (engine, model, run_id, text ...) is copied into every candidate."""
    options.checked()
    out = Conversion()
    others = [_coco(r) for r in existing_rles]
    now = time.time()
    for rle, area, score, label, source in zip(proposals.rles, proposals.areas, proposals.scores,
                                               proposals.labels, proposals.sources):
        if score < options.threshold:
            out.below_threshold += 1
            continue
        if area < max(1, options.min_area):
            out.too_small += 1
            continue
        coco = _coco(rle)
        if _overlaps(coco, others, options.suppress_iou):
            out.duplicates += 1
            continue
        others.append(coco)
        extra = {"source": source} if source else {}
        out.candidates.append(CandidateRecord(
            id=0, image_id=0, rle=rle, score=score, engine=proposals.engine, label=label,
            provenance={**provenance, **extra, "proposed_at": now}, created=now, updated=now))
    return out


def _plain(value: Any) -> Any:
    """numpy values in a proposal's source as plain JSON-able ones."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.tolist() if hasattr(value, "tolist") else value


def _coco(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": list(rle["size"]),
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def _overlaps(rle: dict, others: list[dict], limit: float) -> bool:
    if not others:
        return False
    ious = mask_utils.iou([rle], others, [0] * len(others))
    return bool(np.asarray(ious).max() > limit)
