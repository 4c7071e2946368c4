"""`sam-mi`: typed class names become instance masks (SAM-MI; spec shared/specs/sam_mi.md).
CLIP (open_clip, the user's local ViT-B/16 or ViT-L/14 file) gives dense features and
text embeddings, whose cosine cost map drives a Text-guided Sparse Point Prompter: a few
dozen points instead of SAM's 1,024-point grid go to a frozen SAM / SAM 2 host; Shallow
Mask Aggregation merges SAM's masks by class; Decoupled Mask Injection feeds them as
guidance into the CAT-Seg cost aggregator and its upsampling decoder. Without a trained
plugin the engine runs training-free (MaskCLIP dense similarity -> coarse class masks ->
sparse points -> SAM -> SMAgg). `SamMiEngine.from_checkpoint(sam_file, clip=clip_file,
plugin=...)` builds it; `propose(emb, {"classes": [...]})` answers."""
from engines.sam_mi.aggregator import (
                                       ClassAggregation,
                                       CostAggregator,
                                       SpatialAggregation,
                                       cost_map,
                                       keep_top_classes,
                                       linear_attention,
)
from engines.sam_mi.clip import (
                                       DenseClip,
                                       clip_preprocess,
                                       clip_shapes,
                                       load_clip,
                                       read_clip_state,
)
from engines.sam_mi.config import MAX_CLASSES, SamMiConfig
from engines.sam_mi.dmi import DmiHigh, DmiLow, mask_pool, resize_masks
from engines.sam_mi.engine import SamMiEngine, build_host
from engines.sam_mi.model import ImageFeatures, SamMi, SamMiHeads, count_parameters
from engines.sam_mi.options import TextOptions, parse_classes
from engines.sam_mi.smagg import SmaggResult, overlap_ratios, smagg
from engines.sam_mi.tiny import tiny_clip, tiny_sam_mi
from engines.sam_mi.tspp import (
                                       Tspp,
                                       TsppOutput,
                                       grid_points,
                                       sample_points,
                                       tspp_loss,
                                       tspp_target,
)
from engines.sam_mi.weights import ENGINE, read_sam_mi_plugin, save_sam_mi_plugin

__all__ = [
    "ENGINE", "MAX_CLASSES", "ClassAggregation", "CostAggregator", "DenseClip", "DmiHigh", "DmiLow",
    "ImageFeatures", "SamMi", "SamMiConfig", "SamMiEngine", "SamMiHeads", "SmaggResult",
    "SpatialAggregation", "TextOptions", "Tspp", "TsppOutput", "build_host", "clip_preprocess",
    "clip_shapes", "cost_map", "count_parameters", "grid_points", "keep_top_classes",
    "linear_attention", "load_clip", "mask_pool", "overlap_ratios", "parse_classes",
    "read_clip_state", "read_sam_mi_plugin", "resize_masks", "sample_points", "save_sam_mi_plugin",
    "smagg", "tiny_clip", "tiny_sam_mi", "tspp_loss", "tspp_target",
]
