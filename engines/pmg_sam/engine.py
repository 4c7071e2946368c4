"""`pmg-sam`: salient objects proposed with no prompt (PMG-SAM, Sensors 2026): one pass
of the dual frozen encoder, the fusion and the Pre-Mask-guided decoder gives a
probability map; its 8-connected components above 0.5 are the instances (spec §4).

`embed` runs the whole network (both encoders, fusion, decoder) and keeps only the
low-res logits, the Pre-Mask logits and the predicted IoU: a few hundred KB, so the
embedding cache holds many images. `propose` turns them into instances at the original
image size: threshold, connected components (minimum area an option), score = mean
probability inside, best first. `Proposals.extras` carries the run-level maps: the
Pre-Mask and the final probability map as uint8 (p x 255) at the original size, and the
decoder's predicted IoU. An image with no variation at all (blank) has no salient
object: its proposals are empty without running the network (`extras["blank"]`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines.auto.maps import check_cancel, is_blank, map_instances, map_proposals, to_uint8
from engines.files.checkpoints import checkpoint_identity, load_into
from engines.files.plugin_meta import read_plugin_metadata
from engines.pmg_sam.hiera import load_hiera_branch
from engines.pmg_sam.model import PmgSam, PmgSamHead
from engines.pmg_sam.options import PmgOptions
from engines.pmg_sam.preprocess import prepare, restore
from engines.pmg_sam.u2net import load_u2net_encoder
from engines.pmg_sam.weights import (
    ENGINE,
    U2NET_FILE,
    check_backbones,
    find_plugin,
    plugin_architecture,
    train_hint,
)
from engines.prompts import check_image
from engines.runtime.device import choose_device, encoder_autocast
from engines.types import Cancel, CheckpointError, Embedding, Proposals


class PmgSamEngine:
    name = ENGINE

    def __init__(self, model: PmgSam, *, backbone_key: str, device=None,
                 defaults: PmgOptions | None = None):
        self.device = choose_device(str(device) if device is not None else None)
        self.model = model.to(self.device).eval()
        self.cfg = model.cfg
        self.backbone_key = backbone_key      # its own: the embedding depends on the plugin too
        self.defaults = (defaults or PmgOptions()).checked()

    @classmethod
    def from_checkpoint(cls, path: str | Path, arch: str | None = None, device=None,
                        plugin: str | Path | None = None, u2net: str | Path | None = None,
                        defaults: PmgOptions | None = None) -> PmgSamEngine:
        """`path`: the Hiera file (timm format, `hiera_base_plus_224.mae`); `u2net`: the
        official u2net.pth (default: `u2net.pth` beside `path`); `plugin`: the trained
        PMG-SAM part (default: the newest one trained on `path` found beside it, see
        weights.find_plugin). `arch`, if given, must name the plugin's Hiera variant.
        Each wrong file is one CheckpointError naming it; the plugin is checked against
        both files before any weights are read."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"Hiera file {path} does not exist (PMG-SAM's frozen Hiera-B+ "
                                  "branch: timm hiera_base_plus_224.mae weights)")
        u2net = Path(u2net) if u2net is not None else path.parent / U2NET_FILE
        if not u2net.is_file():
            raise CheckpointError(f"U²-Net file {u2net} does not exist (PMG-SAM's frozen U²-Net "
                                  f"branch: the official u2net.pth; pass u2net= or put it beside "
                                  f"{path.name})")
        plugin = Path(plugin) if plugin is not None else find_plugin(path)
        if plugin is None:
            raise CheckpointError(f"pmg-sam needs a trained PMG-SAM plugin for {path.name} and none "
                                  f"was given or found beside it; {train_hint(path)}")
        record = read_plugin_metadata(plugin)
        if record.get("engine") != ENGINE:
            raise CheckpointError(f"plugin {plugin} is a {record.get('engine')!r} plugin, not {ENGINE!r}")
        cfg, spec = plugin_architecture(record, plugin)
        if arch is not None and arch not in (spec.variant, record.get("backbone_arch")):
            raise CheckpointError(f"plugin {plugin} was trained for Hiera {spec.variant!r}, not {arch!r}")
        hiera_id, u2_id = check_backbones(record, plugin, path, u2net)
        from engines.files.plugins import load_plugin
        state, _ = load_plugin(plugin, engine=ENGINE, backbone_arch=str(record["backbone_arch"]),
                               backbone_checkpoint=hiera_id)
        hiera = load_hiera_branch(path, spec)
        u2 = load_u2net_encoder(u2net)
        if tuple(u2.channels) != tuple(cfg.u2_channels):
            raise CheckpointError(f"plugin {plugin} expects U²-Net stages of {cfg.u2_channels} channels; "
                                  f"{u2net} has {u2.channels}")
        head = PmgSamHead(cfg)
        load_into(head, state, plugin, expected=f"the PMG-SAM head of {record['backbone_arch']}")
        model = PmgSam(cfg, hiera, u2, head)
        key = f"{ENGINE}:{spec.variant}:{hiera_id}:{u2_id}:{checkpoint_identity(plugin)}"
        return cls(model, backbone_key=key, device=device, defaults=defaults)

    @property
    def input_side(self) -> int:
        return self.cfg.image_size

    @torch.no_grad()
    def embed(self, image: np.ndarray) -> Embedding:
        image = check_image(image)
        h, w = image.shape[:2]
        if is_blank(image):
            return Embedding(self.backbone_key, (h, w), (h, w), {}, meta={"blank": "1"})
        x, input_size = prepare(image, self.cfg.image_size, self.device)
        with encoder_autocast(self.device):
            out = self.model(x)
        features = {"logits": out.logits.float().cpu(), "premask": out.premask.float().cpu(),
                    "iou": out.iou.float().cpu()}
        return Embedding(self.backbone_key, (h, w), input_size, features)

    @torch.no_grad()
    def propose(self, emb: Embedding, options: Mapping[str, Any] | None = None, *,
                cancel: Cancel | None = None,
                image: np.ndarray | Callable[[], np.ndarray] | None = None) -> Proposals:
        """Instances of the probability map, best (highest mean probability) first;
        `image` is not needed."""
        opts = self.defaults.updated(options)
        check_cancel(cancel)
        if emb.meta.get("blank"):
            return Proposals.empty(emb.image_size, self.name, extras={"blank": True})
        side = self.cfg.image_size
        prob = torch.sigmoid(restore(emb.features["logits"], emb.input_size, emb.image_size, side))[0, 0]
        premask = torch.sigmoid(restore(emb.features["premask"], emb.input_size, emb.image_size, side))[0, 0]
        prob = prob.numpy()
        extras = {"premask": to_uint8(premask.numpy()), "probability": to_uint8(prob),
                  "iou_pred": float(emb.features["iou"].reshape(-1)[0])}
        return map_proposals(prob, opts, self.name, emb.image_size, extras, cancel)


def instances(prob: np.ndarray, opts: PmgOptions):
    """(H, W) probabilities -> masks (N, H, W) bool, scores (N,) mean probability, boxes
    (N, 4) extents, areas (N,), and how many components there were before the filters
    (engines.auto.maps.map_instances)."""
    return map_instances(prob, opts)
