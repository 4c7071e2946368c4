"""`sam2`: train a whole SAM 2 image path (Hiera trunk, FPN neck, prompt encoder, mask
decoder with its high-resolution skips and object-score head), from scratch or from a
checkpoint.

Like `sam` (sam_full.py), not a plugin: it makes a small SAM 2 on generated data on a
CPU, to freeze under the SAM 2 plugins (ip-sam) when no weights can be downloaded. The
backbone is a SAM 2.1 checkpoint path or `scratch:tiny` (engines/hosts/tiny.py's
tiny_sam2 at 256 px, random init). The result is saved in the official layout
(`{"model": state_dict}` of the whole SAM2Base, memory modules included though they do
not train here), so Sam2Engine, sam2-amg and ip-sam load it like an official file.

Loss as for `sam` (SAM's paper, which SAM 2 keeps for images): a single click trains
the best of the three multimask outputs, every other prompt the single-mask output; the
IoU head learns each trained output's IoU; plus SAM 2's object-score head, trained
towards "present" (every training target is a real object).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from engines.files import checkpoint_identity, load_into, load_state_dict
from engines.hosts import build_sam2_for_state, tiny_sam2

from ..api import AdapterOutput, TrainPrompt, register_adapter
from .sam_full import DecoderOutputs, SamFullAdapter, save_whole_model, scratch_preset
from .sam_host import Sam2Host

PRESETS = {"tiny": dict(img_size=256)}   # tiny_sam2's widths; Sam2Engine reads them back


class Sam2FullAdapter(SamFullAdapter):
    engine = "sam2"
    cacheable = False   # the encoder trains

    def __init__(self, model, identity: str):
        super(SamFullAdapter, self).__init__()
        self.model = model
        self.host = Sam2Host(model)
        self.identity = identity
        model.train()

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.host.encode(images)

    def forward(self, features: dict[str, torch.Tensor], prompts: list[TrainPrompt]) -> AdapterOutput:
        f = features if "image_embed" in features else self.host.encode(features["image"])
        decoder = self.model.sam_mask_decoder
        pe = self.model.sam_prompt_encoder.get_dense_pe()
        out, objects = DecoderOutputs(), []
        for i, prompt in enumerate(prompts):
            sparse, dense = self.host.encode_prompt(prompt)
            # all four outputs in one pass: [single, multi x3], as MaskDecoder.forward slices
            low4, iou4, _, obj = decoder.predict_masks(
                f["image_embed"][i:i + 1], pe, sparse, dense, repeat_image=False,
                high_res_features=[f["high_res_0"][i:i + 1], f["high_res_1"][i:i + 1]])
            out.add(prompt, low4, iou4)
            objects.append(obj.reshape(1))
        return out.result(object_logit=torch.cat(objects))

    def compute_loss(self, out: AdapterOutput, gts: torch.Tensor, loss_fn, frames=None) -> torch.Tensor:
        masks = super().compute_loss(out, gts, loss_fn, frames)
        present = F.binary_cross_entropy_with_logits(
            out.extras["object_logit"].float(), torch.ones_like(out.extras["object_logit"].float()))
        return masks + present

    def export(self, path, **meta: Any) -> Path:
        """The official SAM 2 layout, {"model": state_dict} (+ `<name>.json`, metadata)."""
        return save_whole_model(Path(path).with_suffix(".pt"), {"model": self.plugin_state()},
                                {"engine": "sam2", "backbone": self.identity, **meta})


@register_adapter("sam2")
def build(backbone: str, **options) -> Sam2FullAdapter:
    if backbone.startswith("scratch:"):
        preset = scratch_preset(backbone, PRESETS)
        model = tiny_sam2(seed=int(options.get("init_seed", 0)), **PRESETS[preset])
        return Sam2FullAdapter(model, f"sam2:scratch-{preset}:none")
    state = load_state_dict(backbone, expected="SAM 2.1")
    arch, model = build_sam2_for_state(state, backbone)
    load_into(model, state, backbone, expected=f"SAM 2.1 {arch}")
    return Sam2FullAdapter(model, f"sam2:{arch}:{checkpoint_identity(backbone)}")
