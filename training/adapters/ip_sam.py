"""`ip-sam`: train IP-SAM's plugin (LoRA + heads: SPG, PSG, task decoder, lateral
inhibition, refinement; 21.2 M parameters on Hiera-L) on a frozen SAM 2.1 checkpoint
(spec §3).

The backbone is the SAM 2.1 checkpoint; the plugin is bound to it (engines/ip_sam/
weights.py), so the router and the model picker pair it with that file only. There is
no prompt: an image's target is the union of its instance masks (`union_items`, as for
pmg-sam), plus a mirrored copy of each training image (`flip`, the spec's only
augmentation: each epoch sees every image and its mirror). Loss (engines/ip_sam/loss.py):
BCE + soft IoU + L1 on the coarse and the refined logits and on the SPG's complementary
targets (Y for M_pos, 1 - Y for M_neg), at the input size S x S. Recipe: AdamW (lr 1e-4,
weight decay 1e-2), cosine decay to 1e-6, no warm-up, batch 1.

Two modes:
- end to end (default): the LoRA factors on every Hiera block train with the heads, so
  the encoder runs under autograd on every step (no feature cache: `cacheable` is False);
- heads only (`heads_only=true`, i.e. LoRA rank 0): the encoder stays SAM 2's, its F_s4 and
  F_s16 are cached like the other adapters' frozen features (training/features.py), and a
  step costs only the heads. For CPU users; the plugin then holds no LoRA.
The decoder's own mask tokens are replaced by the SPG's T_out, so they get no gradient:
they are left out of the optimiser (requires_grad off; still saved, the engine's layout).
`start_from=PLUGIN` continues a plugin trained on this very SAM 2 file with the same
heads (a heads-only plugin may start an end-to-end run: its LoRA starts fresh).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engines.files import (
    checkpoint_identity,
    image_digest,
    load_into,
    load_plugin,
    load_state_dict,
    read_plugin_metadata,
)
from engines.ip_sam import (
    ENGINE,
    IpSam,
    IpSamConfig,
    Sam2Preprocess,
    backbone_arch,
    build_sam2,
    load_lora,
    lora_layers,
    loss_from_logits,
    plugin_config,
    plugin_state,
    sam2_arch_of,
    save_ip_plugin,
    split_plugin_state,
)
from engines.types import CheckpointError

from ..api import (
    AdapterOutput,
    InputFrame,
    PluginAdapter,
    TrainPrompt,
    register_adapter,
)
from .map_validation import validate_maps
from ..items import TrainItem, union_items

OUTPUTS = ("coarse", "refined", "mask_pos", "mask_neg")


class IpSamAdapter(PluginAdapter):
    engine = ENGINE

    def __init__(self, model: IpSam, *, arch: str, sam2_path: str | Path, flip: bool = True,
                 loss_weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 recipe: dict[str, Any] | None = None):
        super().__init__()
        self.model, self.cfg = model, model.cfg
        self.arch, self.sam2_path = arch, Path(sam2_path)
        self.identity = checkpoint_identity(self.sam2_path)
        self.cacheable = model.cfg.lora_rank == 0     # heads only: the encoder is SAM 2's
        self.flip = bool(flip)
        self.weights = tuple(float(w) for w in loss_weights)
        self._recipe = dict(recipe or {})
        self.preprocessor = Sam2Preprocess(self.cfg.image_size)
        if self.cfg.prompts == "spg" and self.cfg.output_tokens == "spg":
            model.heads.decoder.mask_tokens.requires_grad_(False)   # replaced by T_out
        self.parts = nn.ModuleList([model.heads, *lora_layers(model.image_encoder.trunk).values()])

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.train(mode)          # IpSam keeps SAM 2's encoders in eval mode
        return self

    @property
    def mode(self) -> str:
        return "heads-only" if self.cacheable else "end-to-end"

    # --- geometry and the encoder -------------------------------------------------------
    @property
    def side(self) -> int:
        return self.cfg.image_size

    def frame(self, image_size: tuple[int, int]) -> InputFrame:
        """SAM 2 stretches the image to S x S: no padding."""
        return InputFrame(tuple(image_size), (self.side, self.side), self.side)

    def _device(self) -> torch.device:
        return next(self.model.heads.parameters()).device

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        return self.preprocessor(image, self._device())[0]

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """F_s4 and F_s16 (the decoder never reads F_s8); cached in heads-only mode."""
        fpn = self.model.encode(images)
        return {"s4": fpn[0], "s16": fpn[-1]}

    # --- the trainable part -------------------------------------------------------------
    @property
    def trainable(self) -> nn.Module:
        """The heads and the LoRA layers (whose frozen base weights do not train)."""
        return self.parts

    def backbone_identity(self) -> str:
        return f"{backbone_arch(self.arch)}:{self.identity}"

    def forward(self, features: dict[str, torch.Tensor], prompts: list[TrainPrompt]) -> AdapterOutput:
        if "image" in features:       # end to end: the LoRA'd encoder runs under autograd
            fpn = self.model.encode(features["image"])
        else:
            fpn = [features["s4"], features["s16"]]
        out = self.model.decode(fpn)
        extras = {k: getattr(out, k) for k in OUTPUTS if getattr(out, k) is not None}
        return AdapterOutput(out.logits, None, extras)

    def compute_loss(self, out: AdapterOutput, gts: torch.Tensor, loss_fn=None,
                     frames: list[InputFrame] | None = None) -> torch.Tensor:
        return self.loss_terms(out, gts)[0]

    def loss_terms(self, out: AdapterOutput, gts: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Spec §3 on the (B, 1, S, S) targets: (total, its parts)."""
        ex = {k: v.float() for k, v in out.extras.items()}
        return loss_from_logits(ex["coarse"], gts.float(), refined=ex.get("refined"),
                                mask_pos=ex.get("mask_pos"), mask_neg=ex.get("mask_neg"),
                                weights=self.weights)

    def plugin_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in plugin_state(self.model).items()}

    def load_plugin_state(self, state: dict[str, torch.Tensor]) -> None:
        lora, heads = split_plugin_state(state, "training state")
        if self.cfg.lora_rank:
            load_lora(self.model.image_encoder.trunk, lora, "training state")
        self.model.heads.load_state_dict(heads, strict=True)

    # --- data: one union target per image, plus its mirror -------------------------------
    def prepare_items(self, items: list[TrainItem], *, train: bool, seed: int = 0) -> list[TrainItem]:
        out = union_items(items)
        if train and self.flip:
            out += [_mirrored(item) for item in list(out)]
        return out

    @torch.no_grad()
    def validate(self, items: list[TrainItem], features, seed: int = 0) -> dict[str, float]:
        """Validation loss and maxF / MAE / S-measure of the probability map at S x S,
        averaged over images."""
        return validate_maps(self, items, features, self._device(), crop=False,
                             loss_of=lambda out, gt, frame: self.loss_terms(out, gt)[0])

    # --- the result ----------------------------------------------------------------------
    def export(self, path, **meta: Any):
        return save_ip_plugin(path, self.model, sam2_path=self.sam2_path, arch=self.arch,
                              mode=self.mode, loss={"weights": list(self.weights)}, **meta)

    def default_recipe(self) -> dict[str, Any]:
        return {"optimizer": "adamw", "lr": 1e-4, "weight_decay": 1e-2, "schedule": "cosine",
                "lr_min": 1e-6, "batch_size": 1, "prompt_mix": {"none": 1}, "mode": self.mode,
                "flip": self.flip, **self._recipe}


def _mirrored(base: TrainItem) -> TrainItem:
    """The image and its target flipped left-right: a new image (its own cache entry)."""
    def image() -> np.ndarray:
        return np.ascontiguousarray(base.load_image()[:, ::-1])

    def mask() -> np.ndarray:
        return np.ascontiguousarray(np.asarray(base.load_mask(), bool)[:, ::-1])
    return TrainItem(base.image_size, image, mask, None, f"{base.name} (mirrored)",
                     source=(base.source, "hflip"), key_fn=lambda: image_digest(image()))


KNOWN = ("config", "heads_only", "flip", "loss_weights", "start_from", "recipe")


@register_adapter(ENGINE)
def build(backbone: str, config: dict | None = None, heads_only: bool = False, flip: bool = True,
          loss_weights: list[float] | None = None, start_from: str | None = None,
          recipe: dict | None = None, **options) -> IpSamAdapter:
    """Fresh heads (and LoRA, unless `heads_only`) on the frozen SAM 2.1 file `backbone`.
    `config`: IpSamConfig fields (default: the paper's model, 1024 px, LoRA r = 32)."""
    if options:
        raise ValueError(f"ip-sam: unknown option(s) {', '.join(sorted(options))}; known: "
                         f"{', '.join(KNOWN)}")
    cfg = IpSamConfig.from_dict(config, source="--option config") if config else IpSamConfig()
    if _flag(heads_only, "heads_only"):
        cfg = replace(cfg, lora_rank=0)
    weights = tuple(loss_weights) if loss_weights else (1.0, 1.0, 1.0)
    if len(weights) != 3:
        raise ValueError(f"ip-sam: loss_weights are (spg, coarse, refined), got {list(weights)}")
    path = Path(backbone)
    state = load_state_dict(path, expected="SAM 2.1")
    arch = sam2_arch_of(state)
    if arch is None:
        raise CheckpointError(f"checkpoint {path} is not a SAM 2.1 checkpoint, which ip-sam trains on")
    sam2 = build_sam2(arch, cfg.image_size)
    load_into(sam2, state, path, expected=f"SAM 2.1 {arch}")
    del state
    try:
        model = IpSam.from_sam2(cfg, sam2)
    except ValueError as exc:
        raise ValueError(f"ip-sam: {exc}; give --option config={{...}} with this SAM 2's width "
                         "and input size") from None
    extra: dict[str, Any] = {}
    if start_from:
        _load_start(model, Path(start_from), path, arch)
        extra["start_from"] = Path(start_from).name
    return IpSamAdapter(model, arch=arch, sam2_path=path, flip=_flag(flip, "flip"),
                        loss_weights=weights, recipe={**extra, **(recipe or {})})


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ValueError(f"ip-sam: {name} must be true or false, got {value!r}")


def _load_start(model: IpSam, plugin: Path, sam2_path: Path, arch: str) -> None:
    """Continue from a plugin trained on this very SAM 2 file with the same heads; its
    LoRA too when the ranks agree (a heads-only plugin leaves the LoRA at its init)."""
    record = read_plugin_metadata(plugin)
    if record.get("engine") != ENGINE:
        raise CheckpointError(f"plugin {plugin} is a {record.get('engine')!r} plugin, not {ENGINE!r}")
    theirs, cfg = plugin_config(record, plugin), model.cfg
    if replace(theirs, lora_rank=cfg.lora_rank) != cfg or theirs.lora_rank not in (0, cfg.lora_rank):
        raise CheckpointError(f"plugin {plugin} has another IP-SAM architecture (LoRA rank "
                              f"{theirs.lora_rank}) than the one being trained (rank {cfg.lora_rank})")
    state, _ = load_plugin(plugin, engine=ENGINE, backbone_arch=backbone_arch(arch),
                           backbone_checkpoint=checkpoint_identity(sam2_path))
    lora, heads = split_plugin_state(state, plugin)
    if theirs.lora_rank:
        load_lora(model.image_encoder.trunk, lora, plugin)
    load_into(model.heads, heads, plugin, expected="the IP-SAM heads being trained")
