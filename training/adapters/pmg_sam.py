"""`pmg-sam`: train PMG-SAM's head (adapters, DRFMs, FeatRefiner, FPN, guided decoder;
23.2 M parameters at full size) on its two frozen branches (spec §3).

The backbone is the timm Hiera file; `u2net.pth` sits beside it (or `u2net=`). There is
no prompt: the target of an image is the union of its instance masks (`prepare_items`
merges an image's items), plus `augment_copies` seeded augmented variants of each
training image (training/sod_augment.py; each is its own image in the feature cache, as
the frozen features of an augmented image differ). The feature cache holds both
branches' outputs (`PmgSam.backbone_features`: Hiera S1..S4 and U²-Net U_1..U_6; about
43 MB an image in fp16 at full size). Loss: BCE + Dice + 10 x IoU-prediction MSE on the
final logits at the input size with the padding left out (soft IoU: `iou_loss="soft"`),
plus BCE + Dice on the Pre-Mask against the area-resized target (`premask_weight`).
Recipe: AdamW (lr 1e-4, weight decay 1e-4), linear warm-up 10 epochs, lr x 0.5 every 40
epochs, validation every epoch with early stopping after 40 epochs without a lower
validation loss (the best plugin is kept). `sam_init=SAM_CHECKPOINT` starts the decoder
from SAM's where names and shapes match (spec §2.8); `start_from=PLUGIN` continues a
plugin trained on the same two files (the COS fine-tune starts from the DIS one).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engines.files import (
    checkpoint_identity,
    image_digest,
    load_plugin,
    load_state_dict,
    read_plugin_metadata,
)
from engines.pmg_sam import (
    ENGINE,
    HIERA_B_PLUS,
    U2NET_FILE,
    HieraSpec,
    PmgSam,
    PmgSamConfig,
    PmgSamHead,
    backbone_arch,
    check_backbones,
    load_hiera_branch,
    load_u2net_encoder,
    plugin_architecture,
    prepare,
    resized_shape,
    sam_init_state,
    save_pmg_plugin,
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
from ..losses import dense_bce_dice, iou_mse, soft_iou_loss
from ..sod_augment import Augment

IOU_LOSSES = ("mse", "soft")


class PmgSamAdapter(PluginAdapter):
    engine = ENGINE

    def __init__(self, model: PmgSam, spec: HieraSpec, hiera_path: Path, u2net_path: Path, *,
                 iou_loss: str = "mse", weights: tuple[float, float, float] = (1.0, 1.0, 10.0),
                 premask_weight: float = 1.0, augment_copies: int = 2,
                 recipe: dict[str, Any] | None = None):
        super().__init__()
        if iou_loss not in IOU_LOSSES:
            raise ValueError(f"pmg-sam: iou_loss must be one of {', '.join(IOU_LOSSES)}, got {iou_loss!r}")
        if augment_copies < 0:
            raise ValueError(f"pmg-sam: augment_copies must be >= 0, got {augment_copies}")
        self.model, self.spec, self.cfg = model, spec, model.cfg
        self.hiera_path, self.u2net_path = Path(hiera_path), Path(u2net_path)
        self.iou_loss, self.weights = iou_loss, tuple(float(w) for w in weights)
        self.premask_weight, self.augment_copies = float(premask_weight), int(augment_copies)
        self.identities = (checkpoint_identity(hiera_path), checkpoint_identity(u2net_path))
        self._recipe = dict(recipe or {})

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.train(mode)        # PmgSam keeps both frozen branches in eval mode
        return self

    # --- geometry and the frozen encoder ----------------------------------------------
    @property
    def side(self) -> int:
        return self.cfg.image_size

    def frame(self, image_size: tuple[int, int]) -> InputFrame:
        return InputFrame(tuple(image_size), resized_shape(*image_size, self.side), self.side)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        return prepare(image, self.side, next(self.model.head.parameters()).device)[0][0]

    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        hiera, u2 = self.model.backbone_features(images)
        return {**{f"hiera{i}": h for i, h in enumerate(hiera)},
                **{f"u2_{i}": u for i, u in enumerate(u2)}}

    # --- the trainable part -------------------------------------------------------------
    @property
    def trainable(self) -> PmgSamHead:
        return self.model.head

    def backbone_identity(self) -> str:
        return f"{backbone_arch(self.spec, self.cfg)}:{'+'.join(self.identities)}"

    def forward(self, features: dict[str, torch.Tensor], prompts: list[TrainPrompt]) -> AdapterOutput:
        hiera = [features[f"hiera{i}"] for i in range(len(self.cfg.hiera_channels))]
        u2 = [features[f"u2_{i}"] for i in range(len(self.cfg.u2_channels))]
        out = self.model.head(hiera, u2)
        return AdapterOutput(out.logits, out.iou[:, 0], {"premask": out.premask})

    def compute_loss(self, out: AdapterOutput, gts: torch.Tensor, loss_fn=None,
                     frames: list[InputFrame] | None = None) -> torch.Tensor:
        return self.loss_terms(out, gts, frames)["total"]

    def loss_terms(self, out: AdapterOutput, gts: torch.Tensor,
                   frames: list[InputFrame] | None) -> dict[str, torch.Tensor]:
        """Spec §3 on the (B, 1, S, S) frame targets, padding excluded."""
        valid = torch.zeros_like(gts, dtype=torch.bool)
        for i, frame in enumerate(frames or []):
            valid[i, :, :frame.input_size[0], :frame.input_size[1]] = True
        if not frames:
            valid[:] = True
        logits = out.logits.float()
        bce, dice = dense_bce_dice(logits, gts, valid)
        if self.iou_loss == "mse":
            iou = iou_mse(out.iou_pred.float(), logits, gts, valid)
        else:
            iou = soft_iou_loss(logits, gts, valid)
        r = self.cfg.premask_size
        small_gt = F.interpolate(gts.float(), size=(r, r), mode="area")
        small_valid = F.interpolate(valid.float(), size=(r, r), mode="area") > 0.5
        pre_bce, pre_dice = dense_bce_dice(out.extras["premask"].float(), small_gt, small_valid)
        w1, w2, w3 = self.weights
        total = w1 * bce + w2 * dice + w3 * iou + self.premask_weight * (pre_bce + pre_dice)
        return {"total": total, "bce": bce, "dice": dice, "iou": iou, "premask": pre_bce + pre_dice}

    # --- data: one union target per image, plus seeded augmented variants ---------------
    def prepare_items(self, items: list[TrainItem], *, train: bool, seed: int = 0) -> list[TrainItem]:
        out = union_items(items)
        if train and self.augment_copies:
            augment = Augment()
            out += [_augmented(base, augment, seed, i, k) for i, base in enumerate(list(out))
                    for k in range(self.augment_copies)]
        return out

    @torch.no_grad()
    def validate(self, items: list[TrainItem], features, seed: int = 0) -> dict[str, float]:
        """Validation loss (the training loss, no augmentation) and maxF / MAE / S-measure
        of the probability map in the input frame (unpadded), averaged over images."""
        return validate_maps(self, items, features, next(self.model.head.parameters()).device,
                             crop=True,
                             loss_of=lambda out, gt, frame: self.loss_terms(out, gt, [frame])["total"])

    # --- the result ----------------------------------------------------------------------
    def export(self, path, **meta: Any):
        return save_pmg_plugin(path, self.model.head, hiera_path=self.hiera_path,
                               u2net_path=self.u2net_path, hiera=self.spec,
                               loss={"iou_loss": self.iou_loss, "weights": list(self.weights),
                                     "premask_weight": self.premask_weight}, **meta)

    def default_recipe(self) -> dict[str, Any]:
        return {"optimizer": "adamw", "lr": 1e-4, "weight_decay": 1e-4, "schedule": "step",
                "warmup_epochs": 10, "lr_step_every_epochs": 40, "lr_gamma": 0.5,
                "val_every_epochs": 1, "early_stop_epochs": 40, "monitor": "loss",
                "prompt_mix": {"none": 1}, "augment_copies": self.augment_copies,
                **self._recipe}


def _augmented(base: TrainItem, augment: Augment, seed: int, index: int, copy: int) -> TrainItem:
    def pair() -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, index, copy, 7])
        return augment(base.load_image(), np.asarray(base.load_mask(), bool), rng)
    return TrainItem(base.image_size, lambda: pair()[0], lambda: pair()[1], None,
                     f"{base.name} (augmented {copy + 1})", source=(base.source, "aug", copy),
                     key_fn=lambda: image_digest(pair()[0]))


@register_adapter(ENGINE)
def build(backbone: str, u2net: str | None = None, config: dict | None = None,
          hiera: dict | None = None, iou_loss: str = "mse", premask_weight: float = 1.0,
          loss_weights: list[float] | None = None, augment_copies: int = 2,
          sam_init: str | None = None, start_from: str | None = None,
          recipe: dict | None = None, **options) -> PmgSamAdapter:
    """A fresh head on the two frozen files. `config` / `hiera`: PmgSamConfig and
    HieraSpec fields (default: the paper's full size, timm hiera_base_plus_224)."""
    if options:
        raise ValueError(f"pmg-sam: unknown option(s) {', '.join(sorted(options))}; known: u2net, "
                         "config, hiera, iou_loss, premask_weight, loss_weights, augment_copies, "
                         "sam_init, start_from, recipe")
    hiera_path = Path(backbone)
    u2_path = Path(u2net) if u2net else hiera_path.parent / U2NET_FILE
    if not u2_path.is_file():
        raise CheckpointError(f"U²-Net file {u2_path} does not exist (PMG-SAM's frozen U²-Net branch: "
                              f"the official u2net.pth; pass --option u2net=PATH or put it beside "
                              f"{hiera_path.name})")
    cfg = PmgSamConfig.from_dict(config, source="--option config") if config else PmgSamConfig()
    spec = replace(HieraSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in hiera.items()})
                   if hiera else HIERA_B_PLUS, img_size=cfg.image_size)
    if spec.channels != cfg.hiera_channels:
        raise ValueError(f"pmg-sam: Hiera {spec.variant} has stages of {spec.channels} channels but "
                         f"the config expects {cfg.hiera_channels}")
    hiera_branch = load_hiera_branch(hiera_path, spec)
    u2 = load_u2net_encoder(u2_path)
    if tuple(u2.channels) != tuple(cfg.u2_channels):
        raise CheckpointError(f"U²-Net file {u2_path} has stages of {tuple(u2.channels)} channels; the "
                              f"config expects {cfg.u2_channels}")
    head = PmgSamHead(cfg)
    extra: dict[str, Any] = {}
    if sam_init:
        state = load_state_dict(sam_init, expected="SAM (segment_anything) for the decoder's init")
        found = sam_init_state(head.decoder, state)
        if not found:
            raise CheckpointError(f"SAM checkpoint {sam_init}: no tensor fits the PMG-SAM decoder "
                                  f"(transformer_dim {cfg.transformer_dim})")
        head.decoder.load_state_dict(found, strict=False)
        extra["sam_init"] = f"{Path(sam_init).name}: {len(found)} tensors"
    if start_from:
        _load_start(head, Path(start_from), hiera_path, u2_path, cfg, spec)
        extra["start_from"] = Path(start_from).name
    weights = tuple(loss_weights) if loss_weights else (1.0, 1.0, 10.0)
    if len(weights) != 3:
        raise ValueError(f"pmg-sam: loss_weights are (bce, dice, iou), got {list(weights)}")
    return PmgSamAdapter(PmgSam(cfg, hiera_branch, u2, head), spec, hiera_path, u2_path,
                         iou_loss=iou_loss, weights=weights, premask_weight=premask_weight,
                         augment_copies=int(augment_copies), recipe={**extra, **(recipe or {})})


def _load_start(head: PmgSamHead, plugin: Path, hiera_path: Path, u2_path: Path,
                cfg: PmgSamConfig, spec: HieraSpec) -> None:
    """Continue from a plugin, if it was trained on these very files and architecture."""
    record = read_plugin_metadata(plugin)
    if record.get("engine") != ENGINE:
        raise CheckpointError(f"plugin {plugin} is a {record.get('engine')!r} plugin, not {ENGINE!r}")
    their_cfg, _ = plugin_architecture(record, plugin)
    if their_cfg != cfg:
        raise CheckpointError(f"plugin {plugin} has another PMG-SAM architecture "
                              f"({their_cfg.arch}) than the one being trained ({cfg.arch})")
    hiera_id, _ = check_backbones(record, plugin, hiera_path, u2_path)
    state, _ = load_plugin(plugin, engine=ENGINE, backbone_arch=backbone_arch(spec, cfg),
                           backbone_checkpoint=hiera_id)
    head.load_state_dict(state, strict=True)
