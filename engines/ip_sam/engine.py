"""`ip-sam`: camouflaged and medical targets proposed with no prompt (IP-SAM; spec §4).
One deterministic pass: SAM 2's encoder with the LoRA merged in, the self-prompts
through SAM 2's frozen prompt encoder, Prompt-Space Gating, the task decoder and the
refinement give one probability map; its connected components above 0.5 are the
instances.

`embed` runs the whole network and keeps only the low-res logits (final, coarse and the
positive self-prompt M_pos): under 1 MB an image at full size. Its backbone key is IP-SAM's own
(`ip-sam:<arch>:<SAM 2 file>:<plugin>`): the LoRA changes the encoder, so an IP-SAM
embedding is never mistaken for a plain SAM 2 one. `propose` turns the map into
instances at the original size (engines/auto/maps.py: threshold, 8-connected components,
minimum area, score = mean probability inside, best first). `Proposals.extras` carries
the probability map and the self-prompt M_pos as uint8 (p x 255) at the original size.
A blank image (one colour) has no target: empty proposals, without running the network.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engines.auto.maps import MapOptions, check_cancel, is_blank, map_proposals, to_uint8
from engines.files.checkpoints import (
    checkpoint_identity,
    describe_checkpoint,
    load_into,
    load_state_dict,
    peek_state_dict,
)
from engines.files.plugin_meta import read_plugin_metadata
from engines.ip_sam.backbone import Sam2Preprocess, build_sam2, sam2_arch_of
from engines.ip_sam.lora import load_lora
from engines.ip_sam.model import IpSam
from engines.ip_sam.weights import (
    ENGINE,
    backbone_arch,
    find_plugin,
    plugin_config,
    split_plugin_state,
    train_hint,
)
from engines.prompts import check_image
from engines.runtime.device import choose_device, encoder_autocast
from engines.types import Cancel, CheckpointError, Embedding, Proposals


class IpSamEngine:
    name = ENGINE

    def __init__(self, model: IpSam, *, backbone_key: str, device=None,
                 defaults: MapOptions | None = None):
        self.device = choose_device(str(device) if device is not None else None)
        self.model = model.to(self.device).eval()
        self.cfg = model.cfg
        self.backbone_key = backbone_key
        self.defaults = (defaults or MapOptions()).checked()
        self.preprocess = Sam2Preprocess(self.cfg.image_size)

    @classmethod
    def from_checkpoint(cls, path: str | Path, arch: str | None = None, device=None,
                        plugin: str | Path | None = None, defaults: MapOptions | None = None,
                        merge: bool = True) -> IpSamEngine:
        """`path`: the SAM 2.1 checkpoint; `plugin`: the trained IP-SAM part (default:
        the newest one trained on `path` found beside it). The plugin is checked against
        the checkpoint (size, then identity) before any weights are read; each wrong file
        is one CheckpointError naming it. `merge=False` keeps the LoRA unmerged."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"SAM 2 checkpoint {path} does not exist (IP-SAM runs on the "
                                  "SAM 2.1 checkpoint its plugin was trained on)")
        plugin = Path(plugin) if plugin is not None else find_plugin(path)
        if plugin is None:
            raise CheckpointError(f"ip-sam needs a trained IP-SAM plugin for {path.name} and none "
                                  f"was given or found beside it; {train_hint(path)}")
        record = read_plugin_metadata(plugin)
        if record.get("engine") != ENGINE:
            raise CheckpointError(f"plugin {plugin} is a {record.get('engine')!r} plugin, not {ENGINE!r}")
        cfg = plugin_config(record, plugin)
        shapes = peek_state_dict(path, expected="SAM 2.1")      # memory-mapped: shapes only
        file_arch = sam2_arch_of(shapes)
        if file_arch is None:
            raise CheckpointError(f"checkpoint {path} is not a SAM 2.1 checkpoint, which ip-sam needs: "
                                  f"it looks like {describe_checkpoint(shapes)}")
        del shapes
        if arch is not None and arch not in (file_arch, backbone_arch(file_arch)):
            raise CheckpointError(f"checkpoint {path} is a SAM 2.1 {file_arch}, not {arch!r}")
        if record.get("backbone_arch") != backbone_arch(file_arch):
            raise CheckpointError(
                f"plugin {plugin} was trained for SAM 2 {record.get('backbone_arch')!r}, but checkpoint "
                f"{path} is {backbone_arch(file_arch)!r}; {train_hint(path)}")
        identity = checkpoint_identity(path)
        if record.get("backbone_checkpoint") != identity:
            raise CheckpointError(
                f"plugin {plugin} was trained on another {backbone_arch(file_arch)} checkpoint "
                f"(identity {record.get('backbone_checkpoint')}, {path.name} has {identity}); a "
                f"plugin only makes sense on the frozen weights it was trained with ({train_hint(path)})")
        lora, heads = split_plugin_state(_read_tensors(plugin), plugin)
        sam2 = build_sam2(file_arch, cfg.image_size)
        load_into(sam2, load_state_dict(path, expected=f"SAM 2.1 {file_arch}"), path,
                  expected=f"SAM 2.1 {file_arch}")
        try:
            model = IpSam.from_sam2(cfg, sam2)
        except ValueError as exc:           # the plugin's shapes do not fit this SAM 2
            raise CheckpointError(f"plugin {plugin} does not fit checkpoint {path}: {exc}") from None
        if cfg.lora_rank:
            load_lora(model.image_encoder.trunk, lora, plugin)
        elif lora:
            raise CheckpointError(f"plugin {plugin}: its metadata says no LoRA (rank 0), but it "
                                  f"holds {len(lora)} LoRA tensors; the file is inconsistent")
        load_into(model.heads, heads, plugin, expected=f"the IP-SAM heads of {backbone_arch(file_arch)}")
        if merge:
            model.merge_lora()
        key = f"{ENGINE}:{file_arch}:{identity}:{checkpoint_identity(plugin)}"
        return cls(model, backbone_key=key, device=device, defaults=defaults)

    @property
    def input_side(self) -> int:
        return self.cfg.image_size

    @torch.no_grad()
    def embed(self, image: np.ndarray) -> Embedding:
        image = check_image(image)
        h, w = image.shape[:2]
        side = self.cfg.image_size
        if is_blank(image):
            return Embedding(self.backbone_key, (h, w), (side, side), {}, meta={"blank": "1"})
        x = self.preprocess(image, self.device)
        with encoder_autocast(self.device):
            out = self.model(x)
        features = {"logits": out.logits.float().cpu(), "coarse": out.coarse.float().cpu()}
        if out.mask_pos is not None:
            features["mask_pos"] = out.mask_pos.float().cpu()
        return Embedding(self.backbone_key, (h, w), (side, side), features)

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
        prob = _probability(emb.features["logits"], emb.image_size)
        extras: dict[str, Any] = {"probability": to_uint8(prob)}
        if "mask_pos" in emb.features:
            extras["self_prompt"] = to_uint8(_probability(emb.features["mask_pos"], emb.image_size))
        return map_proposals(prob, opts, self.name, emb.image_size, extras, cancel)


def _probability(logits: torch.Tensor, image_size: tuple[int, int]) -> np.ndarray:
    """(1, 1, R, R) logits -> (H, W) probabilities: bilinear to the original size (SAM 2
    stretched the image, so there is no padding to crop), then sigmoid."""
    up = F.interpolate(logits.float(), size=tuple(image_size), mode="bilinear", align_corners=False)
    return torch.sigmoid(up)[0, 0].numpy()


def _read_tensors(plugin: Path) -> dict[str, torch.Tensor]:
    """The plugin's tensors; a cut-short or damaged file is one CheckpointError."""
    from safetensors.torch import load_file
    try:
        return load_file(str(plugin))
    except Exception as exc:  # noqa: BLE001  (safetensors raises several types on damaged bytes)
        raise CheckpointError(f"plugin {plugin} is truncated or damaged: its tensors cannot be read "
                              f"({str(exc)[:160]}); copy or train it again") from None
