"""`sam`: train a whole SAM (encoder, prompt encoder, decoder), from scratch or from a
checkpoint.

This is not a plugin: it exists so the experiments can train a small SAM on generated
data on a CPU, freeze it, and train the real plugins on top (no weights can be
downloaded here). The backbone is a SAM checkpoint path (fine-tune) or
`scratch:<preset>` (random init, engines/hosts/tiny.py presets). The result is saved as a plain
state dict in the official key layout, so every engine loads it like an official file.

Loss as in SAM's paper: a single-click prompt is ambiguous, so its three multimask
outputs are all predicted and only the best one (lowest loss) is trained; every other
prompt trains the single-mask output. The IoU head learns the actual IoU of each output.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from engines.files import checkpoint_identity, load_into, load_state_dict
from engines.hosts import tiny_sam

from ..api import AdapterOutput, PluginAdapter, TrainPrompt, register_adapter
from .sam_host import HostGeometry, SamHost

PRESETS = {
    # 256 px input, 16x16 tokens, 64x64 low-res masks: trains on 2 CPU cores in minutes
    "tiny": dict(img_size=256, embed_dim=96, depth=4, num_heads=4, prompt_dim=64,
                 decoder_mlp_dim=256, window_size=4, patch_size=16),
    "micro": dict(img_size=128, embed_dim=32, depth=2, num_heads=2, prompt_dim=32),
}


class SamFullAdapter(HostGeometry, PluginAdapter):
    engine = "sam"
    cacheable = False   # the encoder trains

    def __init__(self, sam, identity: str):
        super().__init__()
        self.model = sam
        self.host = SamHost(sam)
        self.identity = identity
        sam.train()

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"image_embed": self.model.image_encoder(images)}

    @property
    def trainable(self):
        return self.model

    def backbone_identity(self) -> str:
        return self.identity

    def forward(self, features: dict[str, torch.Tensor], prompts: list[TrainPrompt]) -> AdapterOutput:
        embed = features["image_embed"] if "image_embed" in features \
            else self.model.image_encoder(features["image"])
        pe = self.model.prompt_encoder.get_dense_pe()
        out = DecoderOutputs()
        for i, prompt in enumerate(prompts):
            sparse, dense = self.host.encode_prompt(prompt)
            # one decoder pass gives all four outputs: [single, multi x3] (as
            # MaskDecoder.forward slices them)
            low4, iou4 = self.model.mask_decoder.predict_masks(embed[i:i + 1], pe, sparse, dense)
            out.add(prompt, low4, iou4)
        return out.result()

    def compute_loss(self, out: AdapterOutput, gts: torch.Tensor, loss_fn, frames=None) -> torch.Tensor:
        """Per item: the single-mask loss, or for a single click the best of the three
        candidates; plus the IoU head's MSE against each trained output's real IoU."""
        from ..losses import iou_mse
        total = out.logits.new_zeros(())
        for i in range(len(gts)):
            if bool(out.extras["ambiguous"][i]):
                cands = out.extras["candidates"][i:i + 1]
                losses = [loss_fn(i, cands[:, k:k + 1]) for k in range(cands.shape[1])]
                best = min(range(len(losses)), key=lambda k: float(losses[k].detach()))
                total = total + losses[best]
                total = total + iou_mse(out.extras["candidate_iou"][i:i + 1].reshape(-1),
                                        cands.transpose(0, 1), gts[i:i + 1].expand(3, -1, -1, -1))
            else:
                total = total + loss_fn(i, out.logits[i:i + 1])
                total = total + iou_mse(out.iou_pred[i:i + 1], out.logits[i:i + 1], gts[i:i + 1])
        return total / len(gts)

    def plugin_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}

    def default_recipe(self) -> dict[str, Any]:
        return {"optimizer": "adamw", "lr": 4e-4, "weight_decay": 0.05, "schedule": "cosine",
                "grad_clip": 1.0,
                "prompt_mix": {"tight-box": 2, "noisy-box": 1, "points-1": 2, "points-3": 1,
                               "noisy-mask": 0.5},
                "noisy_box_scale": 0.2}

    def export(self, path, **meta: Any) -> Path:
        """A plain state dict in the official layout (+ `<name>.json` with the metadata)."""
        return save_whole_model(Path(path).with_suffix(".pth"), self.plugin_state(),
                                {"engine": "sam", "backbone": self.identity, **meta})


class DecoderOutputs:
    """One batch's decoder outputs, prompt by prompt, as an AdapterOutput."""

    def __init__(self):
        self.logits, self.ious, self.cands, self.cand_ious, self.ambiguous = [], [], [], [], []

    def add(self, prompt: TrainPrompt, low4: torch.Tensor, iou4: torch.Tensor) -> None:
        self.logits.append(low4[:, :1])
        self.ious.append(iou4[:, 0])
        single_click, cand, cand_iou = training_candidates(prompt, low4, iou4)
        self.ambiguous.append(single_click)
        self.cands.append(cand)
        self.cand_ious.append(cand_iou)

    def result(self, **extras: torch.Tensor) -> AdapterOutput:
        return AdapterOutput(torch.cat(self.logits), torch.cat(self.ious),
                             {"candidates": torch.cat(self.cands),
                              "candidate_iou": torch.cat(self.cand_ious),
                              "ambiguous": torch.tensor(self.ambiguous), **extras})


def training_candidates(prompt: TrainPrompt, low4: torch.Tensor, iou4: torch.Tensor):
    """(single click?, 3 candidate logits, their IoUs) from one pass's four outputs
    [single, multi x3]: a single click trains its best of the three multimask outputs,
    any other prompt its single-mask output (repeated, so the shapes match)."""
    single_click = prompt.box is None and prompt.points is not None and len(prompt.points) == 1
    if single_click:
        return True, low4[:, 1:], iou4[:, 1:]
    return False, low4[:, :1].expand(-1, 3, -1, -1), iou4[:, :1].expand(-1, 3)


def save_whole_model(path: Path, payload, record: dict) -> Path:
    """`payload` saved at `path` through a temporary file, `record` beside it as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    torch.save(payload, tmp)
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path


def scratch_preset(backbone: str, presets: dict) -> str:
    """The preset a `scratch:NAME` backbone names (ValueError listing the known ones)."""
    preset = backbone.split(":", 1)[1]
    if preset not in presets:
        raise ValueError(f"unknown preset {preset!r} in {backbone!r}; presets: {', '.join(presets)}")
    return preset


@register_adapter("sam")
def build(backbone: str, **options) -> SamFullAdapter:
    if backbone.startswith("scratch:"):
        preset = scratch_preset(backbone, PRESETS)
        config = {**PRESETS[preset], **{k: int(v) for k, v in options.items() if k in PRESETS["tiny"]}}
        return SamFullAdapter(tiny_sam(seed=int(options.get("init_seed", 0)), **config).train(),
                              f"sam:scratch-{preset}:none")
    from engines.hosts import build_sam_for_state, guess_sam_arch
    state = load_state_dict(backbone, expected="SAM")
    arch = guess_sam_arch(state)
    if arch is None:
        from engines.types import CheckpointError
        raise CheckpointError(f"checkpoint {backbone} is not a SAM checkpoint")
    model = build_sam_for_state(arch, state)
    load_into(model, state, backbone, expected=f"SAM {arch}")
    return SamFullAdapter(model, f"sam:{arch}:{checkpoint_identity(backbone)}")
