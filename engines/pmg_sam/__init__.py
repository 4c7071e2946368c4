"""`pmg-sam`: "Auto" for ordinary photos (PMG-SAM, Sensors 2026; spec
shared/specs/pmg_sam.md). A frozen dual encoder (timm Hiera-B+ MAE at 1024 and the
official U²-Net's six encoder stages on a 256 copy) is fused by six DRFMs into a coarse
Pre-Mask, whose patch tokens guide a SAM-style decoder (two BAIM blocks, high-resolution
skips from Hiera stages 1-2) to one probability map; its connected components are the
proposed instances. About 23.2 M trainable parameters (the plugin); both backbones stay
frozen. `PmgSamEngine.from_checkpoint(hiera_file, u2net=..., plugin=...)` builds it."""
from engines.pmg_sam.config import PmgSamConfig
from engines.pmg_sam.decoder import BAIM, GuidedMaskDecoder, sam_init_state
from engines.pmg_sam.engine import PmgSamEngine, instances
from engines.pmg_sam.fusion import DRFM, SRB, FeatRefiner, Fusion, HAdapter
from engines.pmg_sam.hiera import (
           HIERA_B_PLUS,
           HieraBranch,
           HieraSpec,
           build_timm_hiera,
           load_hiera_branch,
)
from engines.pmg_sam.model import (
           PmgOutput,
           PmgSam,
           PmgSamHead,
           count_parameters,
           head_parameter_breakdown,
)
from engines.pmg_sam.neck import FpnNeck
from engines.pmg_sam.options import PmgOptions
from engines.pmg_sam.preprocess import prepare, resized_shape, restore
from engines.pmg_sam.tiny import TinyHiera, TinyU2, tiny_pmg_sam
from engines.pmg_sam.u2net import U2NetEncoder, load_u2net_encoder, official_layout
from engines.pmg_sam.u2net import full_model as u2net_full_model
from engines.pmg_sam.weights import (
           ENGINE,
           U2NET_FILE,
           backbone_arch,
           check_backbones,
           find_plugin,
           plugin_architecture,
           save_pmg_plugin,
)

__all__ = [
           "BAIM",
           "DRFM",
           "ENGINE",
           "HIERA_B_PLUS",
           "SRB",
           "U2NET_FILE",
           "FeatRefiner",
           "FpnNeck",
           "Fusion",
           "GuidedMaskDecoder",
           "HAdapter",
           "HieraBranch",
           "HieraSpec",
           "PmgOptions",
           "PmgOutput",
           "PmgSam",
           "PmgSamConfig",
           "PmgSamEngine",
           "PmgSamHead",
           "TinyHiera",
           "TinyU2",
           "U2NetEncoder",
           "backbone_arch",
           "build_timm_hiera",
           "check_backbones",
           "count_parameters",
           "find_plugin",
           "head_parameter_breakdown",
           "instances",
           "load_hiera_branch",
           "load_u2net_encoder",
           "official_layout",
           "plugin_architecture",
           "prepare",
           "resized_shape",
           "restore",
           "sam_init_state",
           "save_pmg_plugin",
           "tiny_pmg_sam",
           "u2net_full_model",
]
