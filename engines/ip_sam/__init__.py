"""`ip-sam`: "Auto" for camouflaged and medical targets (IP-SAM; spec
shared/specs/ip_sam.md). SAM 2's Hiera encoder gets LoRA (r = 32 on every block's
attn.qkv / attn.proj, merged at inference); a dual-branch Self-Prompt Generator predicts
foreground / background mask logits, sparse prompt tokens and 4 output tokens; the mask
logits go raw through SAM 2's frozen prompt encoder, Prompt-Space Gating lets the
background embedding suppress the foreground one, and a task decoder trained from
scratch (plus lateral inhibition and a zero-initialised refinement head) gives one
probability map, whose connected components are the proposed instances. 21.2 M
trainable parameters on Hiera-L (the plugin: LoRA + heads), bound to the SAM 2
checkpoint it was trained on. `IpSamEngine.from_checkpoint(sam2_file, plugin=...)`
builds it."""
from engines.ip_sam.backbone import (
    Sam2Preprocess,
    build_sam2,
    meta_parameters,
    meta_sam2,
    sam2_arch_of,
)
from engines.ip_sam.config import IpSamConfig
from engines.ip_sam.decoder import TaskDecoder
from engines.ip_sam.engine import IpSamEngine
from engines.ip_sam.lora import (
    LoRALinear,
    add_lora,
    load_lora,
    lora_layers,
    lora_parameter_count,
    lora_state,
    merge_lora,
)
from engines.ip_sam.loss import ip_sam_loss, loss_from_logits, mask_loss
from engines.ip_sam.model import IpSam, IpSamHeads, IpSamOutput, count_parameters
from engines.ip_sam.psg import PromptSpaceGating
from engines.ip_sam.refine import LateralInhibition, RefinementHead
from engines.ip_sam.spg import SelfPromptGenerator, SelfPrompts
from engines.ip_sam.tiny import tiny_ip_sam
from engines.ip_sam.weights import (
    ENGINE,
    backbone_arch,
    find_plugin,
    plugin_config,
    plugin_state,
    save_ip_plugin,
    split_plugin_state,
)

__all__ = [
    "ENGINE",
    "IpSam",
    "IpSamConfig",
    "IpSamEngine",
    "IpSamHeads",
    "IpSamOutput",
    "LateralInhibition",
    "LoRALinear",
    "PromptSpaceGating",
    "RefinementHead",
    "Sam2Preprocess",
    "SelfPromptGenerator",
    "SelfPrompts",
    "TaskDecoder",
    "add_lora",
    "backbone_arch",
    "build_sam2",
    "count_parameters",
    "find_plugin",
    "ip_sam_loss",
    "load_lora",
    "lora_layers",
    "lora_parameter_count",
    "lora_state",
    "loss_from_logits",
    "mask_loss",
    "merge_lora",
    "meta_parameters",
    "meta_sam2",
    "plugin_config",
    "plugin_state",
    "sam2_arch_of",
    "save_ip_plugin",
    "split_plugin_state",
    "tiny_ip_sam",
]
