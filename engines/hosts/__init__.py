"""SAM and SAM 2 as plain promptable engines, and everything that touches Meta's
modules: builders, test-size models, output packing, the exact and the fast paths.
Plugin engines (hq_sam, stable_sam, ...) build on these."""
from engines.hosts.fast import (disable_fast_attention, disable_fast_decoder,
                                enable_fast_attention, enable_fast_decoder, enable_fast_upscaling)
from engines.hosts.sam import (SAM_ARCHS, SamEngine, build_sam_architecture, build_sam_for_state,
                               guess_sam_arch)
from engines.hosts.sam2 import SAM2_CONFIGS, Sam2Engine, build_sam2_architecture, guess_sam2_arch
from engines.hosts.tiny import tiny_sam, tiny_sam2

__all__ = ["SamEngine", "Sam2Engine", "SAM_ARCHS", "SAM2_CONFIGS", "build_sam_architecture",
           "build_sam_for_state", "guess_sam_arch", "build_sam2_architecture", "guess_sam2_arch",
           "tiny_sam", "tiny_sam2", "enable_fast_decoder", "disable_fast_decoder",
           "enable_fast_upscaling", "enable_fast_attention", "disable_fast_attention"]
