"""The engine layer: images and prompts in, masks out; no Qt, no projects.

Public surface (lazy: importing `engines` or a torch-free name loads no torch):
- the vocabulary: Prompt, Prediction, Proposals, Embedding, Engine, Proposer and errors
  (engines/types.py);
- the facts and the policy: `manifest` (every engine, torch-free) and Router;
- files: EmbeddingCache and the rest of `engines.files`.
Engine packages (`engines.hosts`, `engines.classic`, `engines.hq_sam`, `engines.stable_sam`,
...) state their own public surfaces in their `__init__`.
"""
from engines._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("Prompt", "Prediction", "Proposals", "Embedding", "Engine", "Proposer",
                     "EngineError", "PromptError", "CheckpointError", "ImageError",
                     "CancelledError", "OptionsError"), "types"),
    **dict.fromkeys(("Router", "Routed"), "router"),
    **dict.fromkeys(("EmbeddingCache", "CacheKey", "image_digest"), "files.cache"),
    "check_image": "prompts", "validate_prompt": "prompts",
    **{m: "" for m in ("manifest", "registry", "router", "types", "prompts")},
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
