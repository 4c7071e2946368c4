"""`sam-mi`: typed class names -> instances, on CLIP + a frozen SAM / SAM 2 host.

Two modes, chosen by whether a trained plugin is loaded (`SamMiEngine.mode`):
- "trained": CLIP (CAT-Seg dense features) -> TSPP (points, M^text) -> SAM on the points
  -> SMAgg -> DMI -> CAT-Seg aggregator + decoder -> per-class probabilities.
- "training-free": CLIP's MaskCLIP dense features -> S = cos(F, T) -> M^text = argmax of
  softmax(S / tau) -> TSPP's target (Eqs. 3-5) applied to M^text gives the point
  probabilities (spec §7 "SAM-MI-lite") -> SAM -> SMAgg -> probabilities = softmax(S / tau).
Either way every SAM mask SMAgg assigns to a class is one instance of that class (score:
the class probability averaged inside it; `class_scores` all K); `extras` has the
semantic map (the argmax class index at the original size, uint8), the mode, the points,
the number of SAM decoder passes, the points SAM had already answered on this image
(`points_cached`: engines/sam_mi/sam_points.py keeps SAM's answer per grid point, so an
edited list decodes only new points) and, in trained mode, the typed names the plugin
was not trained on (`unseen`: it still answers them, open vocabulary). The option
`prompter="grid"` runs SAM on the whole grid x grid instead (the dense baseline).

The embedding carries both encoders' output: the host's features under `sam.<name>` and
CLIP's under `clip.<name>`; its backbone key names CLIP, the plugin and the host. The
service caches one embedding per backbone key, so a click engine's embedding of the same
host is not found by this key; `embed(image, host_embedding=...)` reuses one the caller
already has (same host key) instead of running SAM's encoder again.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engines.auto import masks_to_boxes
from engines.files.checkpoints import checkpoint_identity, peek_state_dict
from engines.hosts import Sam2Engine, SamEngine
from engines.hosts.detect import (
    describe,
    guess_sam2_arch,
    guess_sam_arch,
    is_sam2_state,
)
from engines.prompts import check_image
from engines.runtime.device import choose_device
from engines.sam_mi.aggregator import cost_map
from engines.sam_mi.clip import (
    DenseClip,
    arch_name,
    check_fits,
    clip_preprocess,
    load_clip,
)
from engines.sam_mi.config import SamMiConfig
from engines.sam_mi.model import ImageFeatures, SamMi
from engines.sam_mi.options import TextOptions
from engines.sam_mi.sam_points import SamPoints, check_cancel
from engines.sam_mi.smagg import smagg
from engines.sam_mi.tspp import grid_points, sample_points, tspp_target
from engines.sam_mi.weights import ENGINE, read_sam_mi_plugin
from engines.types import (
    Cancel,
    CheckpointError,
    Embedding,
    OptionsError,
    Proposals,
)

# CLIP files looked for beside the SAM checkpoint when none is given (first found wins)
CLIP_FILES = ("ViT-B-16.pt", "clip_vit_b16.safetensors", "open_clip_vit_b16.bin",
              "ViT-L-14-336px.pt", "ViT-L-14.pt", "open_clip_pytorch_model.bin")
SAM_FILES = ("sam_vit_b_01ec64.pth", "sam_vit_l_0b3195.pth", "sam_vit_h_4b8939.pth",
             "sam2.1_hiera_tiny.pt", "sam2.1_hiera_small.pt", "sam2.1_hiera_base_plus.pt",
             "sam2.1_hiera_large.pt")
WORK_SIDE = 256          # SMAgg and DMI see the masks at most this large (same ratios)
TEXT_CACHE = 2048         # class-name embeddings kept


def build_host(path: str | Path, arch: str | None = None, device=None, exact: bool = False):
    """The SAM or SAM 2 engine the file holds; a missing file names what sam-mi needs."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"sam-mi needs a SAM or SAM 2 checkpoint for its masks and {path} does "
                              f"not exist (e.g. {SAM_FILES[0]} or {SAM_FILES[3]}; see "
                              "`annotator models list`)")
    shapes = peek_state_dict(path, expected="SAM or SAM 2")
    if is_sam2_state(shapes):
        family, guessed = Sam2Engine, guess_sam2_arch(shapes)
    elif guess_sam_arch(shapes) is not None:
        family, guessed = SamEngine, None
    else:
        raise CheckpointError(f"checkpoint {path} is not a SAM or SAM 2 checkpoint (it looks like "
                              f"{describe(shapes)}); sam-mi uses one for its masks")
    del shapes
    return family.from_checkpoint(path, arch=arch or guessed, device=device, exact=exact)


def find_clip(beside: Path) -> Path | None:
    for name in CLIP_FILES:
        if (beside.parent / name).is_file():
            return beside.parent / name
    return None


class SamMiEngine(SamPoints):
    name = ENGINE

    def __init__(self, host, clip, cfg: SamMiConfig, *, clip_key: str, heads_state=None,
                 device=None, defaults: TextOptions | None = None, classes_seen=()):
        self.device = choose_device(str(device) if device is not None else None)
        self.host = host
        self.cfg = cfg
        self.model = SamMi(cfg, DenseClip(clip, cfg.taps)).to(self.device).eval()
        self.mode = "trained" if heads_state is not None else "training-free"
        if heads_state is not None:
            self.model.heads.load_state_dict(heads_state)
        self.classes_seen = tuple(classes_seen)
        self.family = "sam2" if isinstance(host, Sam2Engine) else "sam"
        base = TextOptions(pred_iou_thresh=0.8) if self.family == "sam2" else TextOptions()
        self.defaults = defaults or base
        self._key_head = f"{ENGINE}:{clip_key}:{self.mode}|"
        self._text: dict[str, torch.Tensor] = {}       # name -> (D,) embedding, most recent last
        self._decoded: OrderedDict = OrderedDict()     # (embedding, grid point) -> SAM's answer
        self.last_cached = 0                           # points the last request found decoded
        self.last_answers = 0                          # SAM's masks of it before the filters

    @property
    def backbone_key(self) -> str:
        """CLIP's file and the mode, then the host's key (which follows its encoder runtime)."""
        return self._key_head + self.host.backbone_key

    def encode_text(self, names: list[str]) -> torch.Tensor:
        """(1, K, D) text embeddings; each name is encoded once (re-typing the list reuses them)."""
        todo = [n for n in names if n not in self._text]
        if todo:
            for name, row in zip(todo, self.model.encode_text(todo)[0].cpu()):
                self._text[name] = row
        for name in names:                              # most recently used last
            self._text[name] = self._text.pop(name)
        while len(self._text) > TEXT_CACHE:
            self._text.pop(next(iter(self._text)))
        return torch.stack([self._text[n] for n in names])[None].to(self.device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, arch: str | None = None, device=None, *,
                        clip: str | Path | None = None, plugin: str | Path | None = None,
                        clip_arch: str | None = None, quick_gelu: bool = True,
                        exact: bool = False, config: SamMiConfig | None = None) -> SamMiEngine:
        """`path`: the SAM / SAM 2 checkpoint (the host; `arch` its architecture, else read
        from the file); `clip`: the CLIP file (default:
        one of CLIP_FILES beside `path`); `plugin`: a trained SAM-MI plugin (trained mode;
        without one, training-free). `quick_gelu=True` for OpenAI weights."""
        path = Path(path)
        clip_path = Path(clip) if clip is not None else find_clip(path)
        if clip_path is None:
            raise CheckpointError(f"sam-mi needs a CLIP checkpoint (OpenAI ViT-B/16: {CLIP_FILES[0]}) "
                                  f"and none was given or found beside {path} (looked for "
                                  f"{', '.join(CLIP_FILES)})")
        if not clip_path.is_file():
            raise CheckpointError(f"CLIP checkpoint {clip_path} does not exist (sam-mi needs a CLIP "
                                  "ViT-B/16 or ViT-L/14 file)")
        model, shapes = load_clip(clip_path, arch=clip_arch, quick_gelu=quick_gelu)
        name = arch_name(shapes)
        heads, classes_seen = None, ()
        if plugin is not None:
            cfg, heads, clip_override, record = read_sam_mi_plugin(plugin, clip_path, name)
            check_fits(shapes, cfg, clip_path)
            if clip_override:
                missing = sorted(set(clip_override) - set(model.state_dict()))
                if missing:
                    raise CheckpointError(f"plugin {plugin} holds CLIP tensors this CLIP lacks "
                                          f"(e.g. {missing[0]!r})")
                model.load_state_dict(clip_override, strict=False)
            classes_seen = tuple(record.get("classes_seen", ()))
            plugin_id = checkpoint_identity(plugin)
        else:
            cfg = config or _config_for(shapes)
            check_fits(shapes, cfg, clip_path)
            plugin_id = "free"
        host = build_host(path, arch=arch, device=device, exact=exact)
        key = f"{name}:{checkpoint_identity(clip_path)}:{plugin_id}"
        engine = cls(host, model, cfg, clip_key=key, heads_state=heads, device=device,
                     classes_seen=classes_seen)
        engine.clip_path, engine.clip_name = clip_path, name     # what a plugin binds to
        return engine

    @property
    def input_side(self) -> int:
        return self.host.input_side

    # -- embedding

    @torch.no_grad()
    def embed(self, image: np.ndarray, host_embedding: Embedding | None = None) -> Embedding:
        image = check_image(image)
        if host_embedding is not None and host_embedding.backbone_key == self.host.backbone_key:
            sam = host_embedding
        else:
            sam = self.host.embed(image)
        x = clip_preprocess(image, self.cfg.clip_size, self.device)
        features = {f"sam.{k}": v for k, v in sam.features.items()}
        if self.mode == "trained":
            feats = self.model.encode_image(x)
            features["clip.dense"] = feats.dense.float().cpu()
            for i, tap in enumerate(feats.taps):
                features[f"clip.tap{i}"] = tap.float().cpu()
        else:
            dense, _ = self.model.clip(x, "maskclip")
            features["clip.dense"] = dense.float().cpu()
        return Embedding(self.backbone_key, sam.image_size, sam.input_size, features,
                         meta={"mode": self.mode})

    def host_embedding(self, emb: Embedding) -> Embedding:
        """The host's own embedding inside a SAM-MI one (for click engines on that host)."""
        f = {k[4:]: v for k, v in emb.features.items() if k.startswith("sam.")}
        return Embedding(self.host.backbone_key, emb.image_size, emb.input_size, f)

    def check_options(self, options: Mapping[str, Any] | None) -> None:
        self.defaults.updated(options)

    # -- the request

    @torch.no_grad()
    def propose(self, emb: Embedding, options: Mapping[str, Any] | None = None, *,
                cancel: Cancel | None = None,
                image: np.ndarray | Callable[[], np.ndarray] | None = None) -> Proposals:
        """Instances of the typed `options["classes"]`; `image` is not needed."""
        opts = self.defaults.updated(options)
        if emb.backbone_key != self.backbone_key:
            raise OptionsError(f"the embedding was made by {emb.backbone_key!r}, not by this "
                               f"sam-mi ({self.backbone_key!r})")
        _check(cancel)
        names = list(opts.classes)
        h, w = emb.image_size
        work = _work_size((h, w))
        text = self.encode_text(names)
        dense = emb.features["clip.dense"].to(self.device)
        if self.mode == "trained":
            feats = ImageFeatures(dense, [emb.features["clip.tap0"].to(self.device),
                                          emb.features["clip.tap1"].to(self.device)])
            tspp = self.model.prompt(feats, text)
            p = tspp.probability[0].cpu().numpy()
            text_idx = tspp.text_masks[0]
        else:
            prob = torch.softmax(cost_map(dense, text) / opts.temperature, dim=1)
            text_idx = prob.argmax(1)[0]
            onehot = _one_hot(text_idx, len(names), (4 * self.cfg.grid, 4 * self.cfg.grid))
            p, _ = tspp_target(onehot.numpy(), self.cfg.grid, self.cfg.g_p, self.cfg.m_p)
        g = self.cfg.grid
        chosen = np.arange(g * g) if opts.prompter == "grid" else sample_points(p, opts.sampling, opts.seed)
        points = grid_points(chosen, g, (h, w))
        _check(cancel)
        sam_masks, ious, passes = self._sam_masks(
            emb, points, opts, cancel, grid_index=None if opts.prompter == "grid" else chosen)
        text_work = _one_hot(text_idx, len(names), work)
        sam_work = _resize_bool(sam_masks, work)
        merged = smagg(sam_work, text_work, self.cfg.alpha)
        _check(cancel)
        if self.mode == "trained":
            m = merged.masks[None].to(self.device)
            logits = self.model.segment(feats, text, m)
            probs = torch.sigmoid(F.interpolate(logits, size=work, mode="bilinear", align_corners=False))[0]
        else:
            probs = F.interpolate(prob, size=work, mode="bilinear", align_corners=False)[0]
        probs = probs.float().cpu()
        extras = {"mode": self.mode, "points": points.tolist(), "decoder_passes": passes,
                  "points_cached": self.last_cached, "sam_answers": self.last_answers,
                  "sam_masks": len(sam_masks), "aggregated": len(merged.masks)}
        if self.last_answers and not len(sam_masks):     # a weak or retrained host's low scores
            extras["note"] = (f"SAM's mask filters kept none of its {self.last_answers} masks "
                              f"(pred_iou_thresh {opts.pred_iou_thresh}, stability_score_thresh "
                              f"{opts.stability_score_thresh}): lower them for this host")
        return self._instances(names, sam_masks, sam_work, ious, merged, probs, (h, w), opts,
                               extras=extras)

    def _instances(self, names, sam_masks, sam_work, ious, merged, probs, size, opts, extras):
        area = sam_work.flatten(1).float()
        class_scores = (area @ probs.flatten(1).T) / area.sum(1, keepdim=True).clamp(min=1)
        semantic = probs.argmax(0)
        semantic = F.interpolate(semantic[None, None].float(), size=size, mode="nearest")[0, 0]
        extras["semantic"] = semantic.numpy().astype(np.uint8)     # K <= MAX_CLASSES = 256
        extras["classes"] = list(names)
        if self.mode == "trained":
            seen = {n.casefold() for n in self.classes_seen}
            extras["unseen"] = [n for n in names if n.casefold() not in seen]
        keep, labels = [], []
        for i, c in enumerate(merged.assigned.tolist()):
            if c < 0 and not opts.keep_unassigned:
                continue
            score = float(class_scores[i, c]) if c >= 0 else float(class_scores[i].max())
            if score < opts.min_score:
                continue
            keep.append(i)
            labels.append(c)
        extras["unassigned"] = int((merged.assigned < 0).sum())
        if not keep:
            return Proposals.empty(size, self.name, classes=tuple(names), class_names=[], extras=extras)
        idx = torch.tensor(keep)
        scores = torch.tensor([float(class_scores[i, c]) if c >= 0 else float(class_scores[i].max())
                               for i, c in zip(keep, labels)])
        order = torch.argsort(scores, descending=True, stable=True)[:opts.max_instances]
        idx, scores = idx[order], scores[order]
        labels = [labels[int(o)] for o in order]
        masks = sam_masks[idx]
        boxes = masks_to_boxes(masks).float() + torch.tensor([0.0, 0.0, 1.0, 1.0])
        sources = [{"sam_iou": float(ious[i]), "class": names[c] if c >= 0 else None}
                   for i, c in zip(idx.tolist(), labels)]
        return Proposals(masks.numpy(), scores.numpy().astype(np.float32), boxes.numpy().astype(np.float32),
                         self.name, class_names=[names[c] if c >= 0 else None for c in labels],
                         class_scores=class_scores[idx].numpy().astype(np.float32),
                         classes=tuple(names), sources=sources, extras=extras)


def _config_for(shapes: dict) -> SamMiConfig:
    """The training-free config matching a CLIP file (ViT-B/16, ViT-L/14 or another width)."""
    if arch_name(shapes) == "ViT-L-14":
        return SamMiConfig.vit_l()
    if arch_name(shapes) == "ViT-B-16":
        return SamMiConfig()
    layers = shapes["layers"]
    return SamMiConfig.tiny(clip_size=shapes["grid"] * shapes["patch"], clip_width=shapes["width"],
                            patch=shapes["patch"],
                            embed_dim=shapes["embed_dim"], taps=(max(0, layers // 3 - 1), max(1, 2 * layers // 3 - 1)),
                            dmi_heads=1)


def _work_size(size: tuple[int, int]) -> tuple[int, int]:
    h, w = size
    s = min(1.0, WORK_SIDE / max(h, w))
    return max(1, round(h * s)), max(1, round(w * s))


def _one_hot(index: torch.Tensor, k: int, size: tuple[int, int]) -> torch.Tensor:
    """(h, w) class indices -> (K, H, W) bool, nearest-resized."""
    up = F.interpolate(index[None, None].float().cpu(), size=size, mode="nearest")[0, 0].long()
    return up[None] == torch.arange(k)[:, None, None]


def _resize_bool(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if masks.shape[0] == 0:
        return torch.zeros((0, *size), dtype=torch.bool)
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks.bool()
    return F.interpolate(masks[:, None].float(), size=size, mode="area")[:, 0] >= 0.5


_check = check_cancel
