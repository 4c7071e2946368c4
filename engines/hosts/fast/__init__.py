"""Fast CPU paths for the hosts' modules, equal to the reference up to float rounding
(bounds in tests/test_engines/hosts/test_engine_fast_path.py); `exact=True` engines strip them."""
from engines.hosts.fast.decoder import (disable_fast_decoder, enable_fast_decoder,
                                        enable_fast_upscaling)
from engines.hosts.fast.vit_attention import disable_fast_attention, enable_fast_attention

__all__ = ["enable_fast_decoder", "disable_fast_decoder", "enable_fast_upscaling",
           "enable_fast_attention", "disable_fast_attention"]
