"""Fast CPU paths for the hosts' modules, equal to the reference up to float rounding
(bounds in tests/test_engines/hosts/test_engine_fast_path.py); `exact=True` engines strip
them. Also the idioms they are installed with, which plugins use too: `patch` /
`unpatch` / `is_patched`, and the per-layer hook protocol (`LayerHook`, `MixKeysHook`,
`add_layer_hook`)."""
from engines.hosts.fast.decoder import (disable_fast_decoder, enable_fast_decoder,
                                        enable_fast_upscaling)
from engines.hosts.fast.layer_hooks import (LayerHook, MixKeysHook, add_layer_hook, layer_hook,
                                            remove_layer_hook, two_way_block)
from engines.hosts.fast.patching import installed, is_patched, patch, reference, unpatch
from engines.hosts.fast.upscaling import fused_layer_norm_2d
from engines.hosts.fast.vit_attention import disable_fast_attention, enable_fast_attention

__all__ = ["enable_fast_decoder", "disable_fast_decoder", "enable_fast_upscaling",
           "enable_fast_attention", "disable_fast_attention", "fused_layer_norm_2d",
           "LayerHook", "MixKeysHook", "add_layer_hook", "remove_layer_hook", "layer_hook",
           "two_way_block", "patch", "unpatch", "is_patched", "installed", "reference"]
