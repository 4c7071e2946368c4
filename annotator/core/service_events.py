"""What `EngineService` reports: one outcome event per request (annotator/core/service.py).
No Qt, no torch; listeners dispatch on each event's `kind`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Hashable

from engines.types import Prediction, Prompt, PromptError, Proposals

EMBEDDING_STATES = ("embedding", "ready", "failed", "cancelled")
PROPOSAL_TASKS = ("auto", "text")


@dataclass(frozen=True)
class EmbeddingState:
    kind: ClassVar[str] = "embedding"
    image_id: Hashable
    state: str                      # one of EMBEDDING_STATES
    source: str = ""                # "ready": "memory" | "disk" | "computed"
    ms: float = 0.0                 # wall time of load + embed, pauses included
    error: str = ""                 # "failed": the message
    background: bool = False        # from the background (prefetch) worker
    request_id: int | None = None   # the set_image request; None for background work
    engine_name: str = ""


@dataclass(frozen=True)
class PredictionReady:
    kind: ClassVar[str] = "prediction"
    image_id: Hashable
    request_id: int
    prediction: Prediction          # masks at the size of the image as loaded
    engine_name: str
    explain: str                    # which engine answered and what was skipped, for the UI
    ms: float                       # from the worker taking the request to the answer
    wait_ms: float = 0.0            # time the request waited in the queue


@dataclass(frozen=True)
class PredictionFailed:
    kind: ClassVar[str] = "prediction_failed"
    image_id: Hashable
    request_id: int
    message: str
    error_type: str = ""            # e.g. "PromptError", "ImageLoadError"
    ms: float = 0.0


@dataclass(frozen=True)
class ProposalsReady:
    kind: ClassVar[str] = "proposals"
    image_id: Hashable
    request_id: int
    proposals: Proposals            # N objects at the size of the image as loaded
    task: str                       # "auto" | "text"
    engine_name: str
    explain: str
    ms: float
    wait_ms: float = 0.0
    model: str = ""                 # the engine's model identity (backbone key, plugin file)


@dataclass(frozen=True)
class ProposalsFailed:
    kind: ClassVar[str] = "proposals_failed"
    image_id: Hashable
    request_id: int
    task: str
    message: str                    # e.g. no proposer installed, an option out of range
    error_type: str = ""            # e.g. "EngineError", "OptionsError"
    ms: float = 0.0


@dataclass(frozen=True)
class Dropped:
    kind: ClassVar[str] = "dropped"
    image_id: Hashable
    request_id: int
    reason: str


@dataclass(frozen=True)
class EncoderRuntime:
    """The background build of an engine's faster encoder runtime (engines/runtime):
    progress lines, then "ready" (the runtime that answers from now on) or "failed"."""
    kind: ClassVar[str] = "encoder_runtime"
    engine_name: str
    state: str                      # "building" | "ready" | "failed"
    runtime: str                    # the runtime answering when the event was made
    message: str


Event = (EmbeddingState | PredictionReady | PredictionFailed | ProposalsReady | ProposalsFailed
         | Dropped | EncoderRuntime)


def prompt_task(prompt: Prompt) -> str:
    """The router's task for a prompt: "text", "box" or "points"; PromptError if empty."""
    if prompt.text:
        return "text"
    if prompt.box is not None:
        return "box"
    if prompt.is_empty:
        raise PromptError("empty prompt: give at least one point, a box, a previous mask "
                          "or a class name")
    return "points"

