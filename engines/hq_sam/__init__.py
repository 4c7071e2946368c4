"""`hq-sam`: SAM (or SAM 2) plus HQ-SAM's output token and feature fusion, from the
official sam_hq_vit_* files or a trained plugin on a plain host."""
from engines.hq_sam.engine import (HqSamEngine, build_hq_architecture, guess_hq_arch, hq_features,
                                   hq_from_sam_state, plugin_fusion, select_hq_output,
                                   tiny_hq_sam)
from engines.hq_sam.fast import folded_conv3x3, predict_masks_folded
from engines.hq_sam.sam2 import HqSam2Decoder, HqSam2Engine
from engines.hq_sam.weights import (HQ2_PARTS, HQ_PARTS, HqParts, freeze_all_but_hq,
                                    has_hq_weights, merge_hq_plugin, split_hq_checkpoint)

__all__ = ["HqSamEngine", "HqSam2Engine", "HqSam2Decoder", "build_hq_architecture",
           "guess_hq_arch", "hq_features", "hq_from_sam_state", "plugin_fusion", "select_hq_output", "tiny_hq_sam",
           "folded_conv3x3", "predict_masks_folded", "HQ_PARTS", "HQ2_PARTS", "HqParts",
           "freeze_all_but_hq", "has_hq_weights", "merge_hq_plugin", "split_hq_checkpoint"]
