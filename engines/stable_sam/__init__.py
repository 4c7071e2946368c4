"""`stable-sam`: a SAM / SAM 2 host with Stable-SAM's trained deformable-sampling plugin
(DSP + DRP) mixed into the decoder's second two-way block."""
from engines.stable_sam.engine import ENGINE, StableSamEngine, find_plugin, train_hint
from engines.stable_sam.plugin import (LAYER, StableSAMPlugin, StableSamHook, attach, attached,
                                       detach, output_token_index)

__all__ = ["ENGINE", "StableSamEngine", "find_plugin", "train_hint", "LAYER",
           "StableSAMPlugin", "StableSamHook", "attach", "attached", "detach",
           "output_token_index"]
