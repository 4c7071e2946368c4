"""`sam-mi`: train SAM-MI's heads on the project's own categories (spec §3, §2.8).

`--backbone` is the SAM / SAM 2 checkpoint, `--option clip=FILE` the CLIP file (default:
one beside the SAM file, as the engine looks), `--option stage=1|2`.
- Stage 1: the TSPP alone, on cached CLIP features (CAT-Seg dense F_l^v): L_tspp =
  CE(z^m, labels, ignore 255) + 0.5 * MSE(p̂, p) on the grid points not ignored (p from
  Eqs. 3-5 on the per-class masks). SAM is not needed and not run.
- Stage 2: the full model. CLIP runs online (its CAT-Seg attention subset trains: the q
  and v rows of every attention's in_proj in both towers, and the positional
  embeddings, at clip_lr 2e-6); the TSPP's p̂ (stop-gradient) is sampled (Bernoulli,
  seeded by the trainer's per-step generator), the frozen SAM decodes those points on
  its cached embedding (the engine's own SAM path, AMG filters), SMAgg merges them with
  M^text, DMI and the CAT-Seg aggregator give per-class logits: L = BCE(logits, one-hot)
  over the pixels not ignored (CAT-Seg's loss; it also pushes ignored pixels to "no
  class", we leave them out) + 0.1 * L_tspp. Heads at lr 2e-4, the TSPP at tspp_lr 2e-5.
Targets come from the instance masks (training/semantic.py): unlabelled pixels and class
clashes are 255 unless `--option background=NAME` makes unlabelled pixels a class. The
vocabulary is the training categories in first-seen order; the plugin records it
(`classes_seen`) and the engine still takes any typed name. `start_from=PLUGIN` continues
a plugin (stage 2 from stage 1's). Labels and SMAgg live in the CLIP frame (the whole
image stretched to clip_size²).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engines.files import checkpoint_identity
from engines.sam_mi import (
    ENGINE,
    ImageFeatures,
    SamMiConfig,
    SamMiEngine,
    clip_preprocess,
    grid_points,
    read_sam_mi_plugin,
    sample_points,
    save_sam_mi_plugin,
    smagg,
    tspp_loss,
    tspp_target,
)
from engines.types import CheckpointError, Embedding

from ..api import AdapterOutput, InputFrame, PluginAdapter, TrainPrompt, register_adapter
from ..semantic import IGNORE, SemanticItem, resize_labels, semantic_items, vocabulary_of

STAGES = (1, 2)


class SamMiAdapter(PluginAdapter):
    engine = ENGINE

    def __init__(self, engine: SamMiEngine, clip_path: Path, clip_name: str, stage: int, *,
                 background: str | None = None, sam_options: dict | None = None,
                 lambda_mse: float = 0.5, lambda_tspp: float = 0.1,
                 recipe: dict[str, Any] | None = None):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"sam-mi: stage must be 1 (the TSPP alone) or 2 (the full model), got {stage!r}")
        self.model = engine.model                 # SamMi: CLIP + the heads
        self.sam = engine.host.model              # registered so .to() moves it; frozen
        self.__dict__["_engine"] = engine
        self.cfg: SamMiConfig = engine.cfg
        self.stage, self.background = stage, background
        self.clip_path, self.clip_name = Path(clip_path), clip_name
        self.clip_id = checkpoint_identity(clip_path)
        self.sam_options = dict(sam_options or {})
        self.lambda_mse, self.lambda_tspp = float(lambda_mse), float(lambda_tspp)
        self._recipe = dict(recipe or {})
        self.vocabulary: list[str] = []
        self._active: list[str] = []              # the vocabulary of the items being run
        self._text_cache: dict[tuple[str, ...], torch.Tensor] = {}
        self._sam_calls = self._sam_empty = 0     # SAM answers at stage 2, and those left empty
        for p in self.parameters():
            p.requires_grad_(False)
        heads = self.model.heads
        if stage == 1:
            part: nn.Module = heads.tspp
            for p in part.parameters():
                p.requires_grad_(True)
        else:
            part = nn.ModuleDict({"heads": heads, "clip": self.model.clip.clip})
            for p in heads.parameters():
                p.requires_grad_(True)
            for name, p in self.clip_subset().items():
                p.requires_grad_(True)
                if name.endswith("in_proj_weight") or name.endswith("in_proj_bias"):
                    p.register_hook(_keep_k_frozen)
        self.__dict__["_part"] = part

    # --- devices: the engine's SAM path runs where the modules are ----------------------
    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        device = next(self.model.parameters()).device
        self._engine.device = self._engine.host.device = device
        return out

    def train(self, mode: bool = True):
        super().train(mode)
        self.sam.eval()
        self.model.clip.eval()            # CLIP has no dropout; keep it as inference runs it
        return self

    # --- geometry and the frozen encoders ---------------------------------------------
    @property
    def side(self) -> int:
        return int(self._engine.host.input_side)

    def frame(self, image_size: tuple[int, int]) -> InputFrame:
        return InputFrame(tuple(image_size), self._sam_input_size(image_size), self.side)

    def _sam_input_size(self, size) -> tuple[int, int]:
        host = self._engine.host
        if self._engine.family == "sam":
            h, w = host.transform.get_preprocess_shape(int(size[0]), int(size[1]), self.side)
            return int(h), int(w)
        return self.side, self.side

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """The pixels as they are (3, H, W): `encode` applies both encoders' own
        preprocessing (SAM's resize and pad, CLIP's stretch to clip_size)."""
        return torch.as_tensor(np.ascontiguousarray(image)).permute(2, 0, 1)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        image = images[0].permute(1, 2, 0).cpu().numpy().astype(np.uint8)
        device = next(self.model.parameters()).device
        x = clip_preprocess(image, self.cfg.clip_size, device)
        if self.stage == 1:               # the TSPP sees only F_l^v (detached)
            return {"clip.dense": self.model.encode_image(x).dense}
        sam = self._engine.host.embed(image)
        return {"clip.pixels": x, **{f"sam.{k}": v for k, v in sam.features.items()}}

    # --- what trains ------------------------------------------------------------------
    @property
    def trainable(self) -> nn.Module:
        return self._part

    def clip_subset(self) -> dict[str, nn.Parameter]:
        """CAT-Seg's "attention" fine-tuning set: every attention's in_proj (whose k rows
        a hook keeps frozen) and the positional embeddings, in both towers."""
        return {n: p for n, p in self.model.clip.clip.named_parameters()
                if ".attn.in_proj_" in n or "positional_embedding" in n}

    def plugin_state(self) -> dict[str, torch.Tensor]:
        if self.stage == 1:
            return super().plugin_state()
        state = {f"heads.{k}": v for k, v in self.model.heads.state_dict().items()}
        state.update({f"clip.{k}": p for k, p in self.clip_subset().items()})
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    def load_plugin_state(self, state: dict[str, torch.Tensor]) -> None:
        if self.stage == 1:
            return super().load_plugin_state(state)
        self.model.heads.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("heads.")})
        subset = self.clip_subset()
        with torch.no_grad():
            for k, v in state.items():
                if k.startswith("clip."):
                    subset[k[5:]].copy_(v)

    def param_groups(self, params: list, recipe: dict[str, Any]) -> list[dict[str, Any]]:
        lr = float(recipe.get("lr", 2e-4))
        tspp = {id(p) for p in self.model.heads.tspp.parameters()}
        clip = {id(p) for p in self.model.clip.parameters()}
        groups = {"heads": [], "tspp": [], "clip": []}
        for p in params:
            groups["clip" if id(p) in clip else "tspp" if id(p) in tspp else "heads"].append(p)
        rates = {"heads": lr, "tspp": float(recipe.get("tspp_lr", lr if self.stage == 1 else lr / 10)),
                 "clip": float(recipe.get("clip_lr", lr / 100))}
        out = [{"params": ps, "lr": rates[name], "name": name} for name, ps in groups.items() if ps]
        for g in out:
            if g["name"] == "clip":
                g["weight_decay"] = 0.0       # decay would move the frozen k rows
        return out

    def backbone_identity(self) -> str:
        # it names the plugin file too: no path separators, no dots (the suffix)
        host = self._engine.host.backbone_key.replace(":", "-")
        name = self.clip_name.replace("/", "-")
        return f"clip-{name}:{self.clip_id}+{host}+stage{self.stage}".replace(".", "_")

    # --- data: one semantic item per image ----------------------------------------------
    def prepare_items(self, items: list, *, train: bool, seed: int = 0) -> list[SemanticItem]:
        if not items:
            return []
        if train:
            self.vocabulary = vocabulary_of(items, self.background)
            vocab = self.vocabulary
        else:
            vocab = vocabulary_of(items, self.background, start=self.vocabulary)
        return semantic_items(items, vocab, self.background)

    def item_inputs(self, item: SemanticItem, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        if "labels" not in item.memo:
            side = self.cfg.clip_size
            labels = resize_labels(item.labels(), (side, side))
            present = [c for c in np.unique(labels) if c != IGNORE]
            masks = labels[None] == np.array(present, np.uint8).reshape(-1, 1, 1)
            target, valid = tspp_target(masks, self.cfg.grid, self.cfg.g_p, self.cfg.m_p,
                                        ignore=labels == IGNORE)
            item.memo.update(labels=torch.from_numpy(labels.astype(np.int64)),
                             target=torch.from_numpy(target).float(), valid=torch.from_numpy(valid))
        self._active = list(item.vocabulary)
        return {"labels": item.memo["labels"], "tspp_target": item.memo["target"],
                "tspp_valid": item.memo["valid"], "image_size": torch.tensor(item.image_size),
                "seed": torch.tensor(int(rng.integers(2 ** 31)))}

    # --- the forward ------------------------------------------------------------------
    def _text(self) -> torch.Tensor:
        names = tuple(self._active or self.vocabulary)
        if self.stage == 2:                       # the text tower's attention trains too
            return self.model.encode_text(list(names))
        if names not in self._text_cache:
            with torch.no_grad():
                self._text_cache[names] = self.model.encode_text(list(names))
        return self._text_cache[names]

    def forward(self, features: dict[str, torch.Tensor], prompts: list[TrainPrompt]) -> AdapterOutput:
        text = self._text()
        labels = features["labels"].long()
        if self.stage == 1:
            feats = ImageFeatures(features["clip.dense"].float(), [])
        else:
            feats = self.model.encode_image(features["clip.pixels"].float())
        tspp = self.model.prompt(feats, text)
        l_tspp = tspp_loss(tspp, labels, features["tspp_target"], features["tspp_valid"].float(),
                           self.lambda_mse)
        if self.stage == 1:
            return AdapterOutput(tspp.mask_logits, extras={"loss": l_tspp, "tspp": l_tspp.detach()})
        logits, points = [], []
        for i in range(labels.shape[0]):
            masks, n = self._sam_groups(features, tspp, i, labels.shape[-2:])
            points.append(n)
            one = ImageFeatures(feats.dense[i:i + 1], [t[i:i + 1] for t in feats.taps])
            out = self.model.segment(one, text, masks[None].to(labels.device))
            logits.append(F.interpolate(out, size=labels.shape[-2:], mode="bilinear", align_corners=False))
        logits_t = torch.cat(logits)
        l_seg = dense_bce(logits_t, labels)
        total = l_seg + self.lambda_tspp * l_tspp
        return AdapterOutput(logits_t, extras={"loss": total, "seg": l_seg.detach(), "tspp": l_tspp.detach(),
                                               "points": torch.tensor(points, dtype=torch.float)})

    @torch.no_grad()
    def _sam_groups(self, features, tspp, i: int, size) -> tuple[torch.Tensor, int]:
        """SAM on points sampled from p̂ (Bernoulli, the item's seed), merged by SMAgg with
        M^text at the label frame -> (N_m, L, L) bool and the number of points."""
        h, w = (int(v) for v in features["image_size"][i])
        p = tspp.probability[i].detach().float().cpu().numpy()
        chosen = sample_points(p, "bernoulli", int(features["seed"][i]))
        pts = grid_points(chosen, self.cfg.grid, (h, w))
        sam = {k: v[i:i + 1].float() for k, v in features.items() if k.startswith("sam.")}
        emb = Embedding("train", (h, w), self._sam_input_size((h, w)), sam)
        masks, _, _ = self._engine.sam_masks(emb, pts, self.sam_options)
        self._note_sam_answer(len(masks) == 0 and self._engine.last_answers > 0)
        if len(masks):
            masks = F.interpolate(masks[:, None].float(), size=tuple(size), mode="area")[:, 0] >= 0.5
        else:
            masks = torch.zeros((0, *size), dtype=torch.bool)
        k = len(self._active or self.vocabulary)
        idx = F.interpolate(tspp.text_masks[i][None, None].float().cpu(), size=tuple(size), mode="nearest")[0, 0]
        text = idx.long()[None] == torch.arange(k)[:, None, None]
        return smagg(masks, text, self.cfg.alpha).masks, len(pts)

    def _note_sam_answer(self, filtered_out: bool, window: int = 20) -> None:
        """Warn once when SAM's filters drop every mask on most of the first images: mask
        injection then trains on empty masks (a tiny or retrained host's predicted IoUs sit
        below AMG's 0.88 / 0.95)."""
        self._sam_calls += 1
        self._sam_empty += filtered_out
        if self._sam_calls == window and self._sam_empty >= 0.9 * window:
            import warnings
            opts = {k: self.sam_options.get(k, getattr(self._engine.defaults, k))
                    for k in ("pred_iou_thresh", "stability_score_thresh")}
            warnings.warn(f"sam-mi: SAM's mask filters ({', '.join(f'{k} {v}' for k, v in opts.items())}) "
                          f"dropped every mask on {self._sam_empty} of the first {window} images, so mask "
                          "injection trains on nothing; lower them with --option sam_options="
                          "'{\"pred_iou_thresh\": 0, \"stability_score_thresh\": 0}'", stacklevel=2)

    def compute_loss(self, out: AdapterOutput, gts, loss_fn=None, frames=None) -> torch.Tensor:
        return out.extras["loss"]

    @torch.no_grad()
    def validate(self, items: list, features, seed: int = 0) -> dict[str, float]:
        """The training loss and the argmax mIoU (the TSPP's M^text in stage 1, the final
        logits in stage 2) on the held-out images, in the label frame."""
        from ..text_metrics import Confusion
        self.eval()
        losses, confusion = [], None
        for index, item in enumerate(items):
            inputs = self.item_inputs(item, np.random.default_rng([seed, index, 9]))
            feats = {k: v[None].to(self._device()) for k, v in {**features(item), **inputs}.items()}
            out = self(feats, [TrainPrompt(kind="none")])
            losses.append(float(out.extras["loss"]))
            logits = F.interpolate(out.logits.float(), size=inputs["labels"].shape, mode="bilinear",
                                   align_corners=False)
            confusion = confusion or Confusion(logits.shape[1])
            confusion.add(logits.argmax(1)[0].cpu().numpy(), inputs["labels"].numpy())
        self._active = list(self.vocabulary)
        self.train()
        if not losses:
            return {}
        return {"loss": float(np.mean(losses)), "miou": confusion.scores()["miou"]}

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    # --- the result ---------------------------------------------------------------------
    def export(self, path, **meta: Any):
        clip_state = {k: v for k, v in self.plugin_state().items() if k.startswith("clip.")}
        return save_sam_mi_plugin(
            path, self.model, clip_path=self.clip_path, clip_name=self.clip_name,
            classes_seen=self.vocabulary,
            clip_state={k[5:]: v for k, v in clip_state.items()} or None, stage=self.stage,
            trained=["tspp"] if self.stage == 1 else ["heads", "clip attention subset"],
            sam_host=self._engine.host.backbone_key, background=self.background,
            loss={"lambda_mse": self.lambda_mse, "lambda_tspp": self.lambda_tspp}, **meta)

    def default_recipe(self) -> dict[str, Any]:
        """Spec §3 / CAT-Seg: AdamW 2e-4 (CLIP 2e-6, the TSPP 2e-5 in stage 2), weight
        decay 1e-4, cosine to 0 with no warm-up, gradient norm clipped at 0.01, batch 4."""
        return {"optimizer": "adamw", "lr": 2e-4, "weight_decay": 1e-4, "schedule": "cosine",
                "grad_clip": 0.01, "batch_size": 4, "prompt_mix": {"none": 1}, "stage": self.stage,
                **self._recipe}


def _keep_k_frozen(grad: torch.Tensor) -> torch.Tensor:
    """in_proj packs q, k, v along dim 0: CAT-Seg trains q and v only."""
    d = grad.shape[0] // 3
    grad = grad.clone()
    grad[d:2 * d] = 0
    return grad


def dense_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits against one-hot targets (B, K, H, W) over pixels not labelled 255."""
    valid = labels != IGNORE
    k = logits.shape[1]
    onehot = F.one_hot(labels.clamp(max=k - 1) * valid, k).permute(0, 3, 1, 2).float()
    loss = F.binary_cross_entropy_with_logits(logits.float(), onehot, reduction="none").mean(1)
    return (loss * valid).sum() / valid.sum().clamp(min=1)


@register_adapter(ENGINE)
def build(backbone: str, clip: str | None = None, stage: int = 1, config: dict | None = None,
          background: str | None = None, sam_options: dict | None = None,
          start_from: str | None = None, lambda_mse: float = 0.5, lambda_tspp: float = 0.1,
          recipe: dict | None = None, **options) -> SamMiAdapter:
    """A fresh SAM-MI (or `start_from` a plugin) on the SAM / SAM 2 file `backbone` and
    the CLIP file `clip`. `config`: SamMiConfig fields (default: the one the engine picks
    for the CLIP file); `sam_options`: TextOptions for SAM's filters on the sampled points."""
    if options:
        raise ValueError(f"sam-mi: unknown option(s) {', '.join(sorted(options))}; known: clip, "
                         "stage, config, background, sam_options, start_from, lambda_mse, "
                         "lambda_tspp, recipe")
    if isinstance(stage, bool) or stage not in STAGES:
        raise ValueError(f"sam-mi: stage must be 1 (the TSPP alone) or 2 (the full model), got {stage!r}")
    cfg = SamMiConfig.from_dict(config, source="--option config") if config else None
    engine = SamMiEngine.from_checkpoint(backbone, clip=clip, config=cfg)
    clip_path = engine.clip_path
    extra: dict[str, Any] = {}
    if start_from:
        their_cfg, heads, clip_state, record = read_sam_mi_plugin(start_from, clip_path, engine.clip_name)
        if their_cfg != engine.cfg:
            raise CheckpointError(f"plugin {start_from} has another SAM-MI configuration than the "
                                  "one being trained (pass its --option config)")
        engine.model.heads.load_state_dict(heads)
        engine.model.clip.clip.load_state_dict(clip_state, strict=False)
        extra["start_from"] = f"{Path(start_from).name} (stage {record.get('stage')})"
    return SamMiAdapter(engine, clip_path, engine.clip_name, int(stage), background=background,
                        sam_options=sam_options, lambda_mse=lambda_mse, lambda_tspp=lambda_tspp,
                        recipe={**extra, **(recipe or {})})
