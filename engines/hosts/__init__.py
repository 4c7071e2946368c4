"""SAM and SAM 2 as plain promptable engines, and everything that touches Meta's
modules: the state-dict reader, builders, test-size models, input geometry, output
packing, the shared decoder pieces, the exact and the fast paths, and the patching
idiom with its per-layer hook protocol. Plugin engines (hq_sam, stable_sam, ...) and
training's adapters build on these.

Lazy: `from engines.hosts import detect` loads no torch and no segment_anything.
"""
from engines._lazy import lazy_exports

_EXPORTS = {
    **{m: "" for m in ("build", "decoding", "detect", "exact", "fast", "geometry", "outputs", "sam",
                       "sam2", "tiny")},
    **dict.fromkeys(("FAMILIES", "HIERA_SIZES", "VIT_SIZES", "Detected", "SamConfig",
                     "describe", "guess_sam2_arch", "guess_sam_arch", "has_hq_token",
                     "is_sam2_state", "sam_config_from_state", "tiny_sam_config",
                     "vit_size_name"), "detect"),
    **dict.fromkeys(("SAM_ARCHS", "SamEngine", "build_sam_architecture", "build_sam_for_state"),
                    "sam"),
    **dict.fromkeys(("SAM2_CONFIGS", "TINY_SAM2", "Sam2Engine", "build_sam2_architecture",
                     "build_sam2_for_state"), "sam2"),
    **dict.fromkeys(("HOST_ARCHS", "build_host", "mask_decoder_of", "prompt_encoder_of"), "build"),
    **dict.fromkeys(("tiny_sam", "tiny_sam2"), "tiny"),
    "upsample_logits": "outputs",
    **dict.fromkeys(("sam_preprocess", "sam_prompt_inputs", "sam2_feat_sizes", "sam2_feature_maps",
                     "sam2_prompt_points", "sam2_scale_coords"), "geometry"),
    **dict.fromkeys(("enable_decoder_reuse", "disable_decoder_reuse", "memo_dense_pe"), "exact"),
    **dict.fromkeys(("enable_fast_decoder", "disable_fast_decoder", "enable_fast_upscaling",
                     "enable_fast_attention", "disable_fast_attention", "fused_layer_norm_2d",
                     "LayerHook", "MixKeysHook", "add_layer_hook", "remove_layer_hook",
                     "layer_hook", "two_way_block", "patch", "unpatch", "is_patched",
                     "installed", "reference"), "fast"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
