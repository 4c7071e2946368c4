"""One training loop for every trainable engine.

An engine supplies a `PluginAdapter` (training/api.py): its frozen encoder, its input
geometry and a forward whose gradients reach only its plugin. This loop does the rest:
cached frozen features, seeded prompt synthesis, the point-sampled BCE + Dice loss,
AdamW/Adam with a schedule, gradient clipping, mixed precision on GPU, checkpoints every
N steps with exact resume, DDP under torchrun, and an event stream.

An engine's recipe may also ask for periodic validation and early stopping (`val_every`,
`early_stop`: patience, both in steps, or `*_epochs` in epochs of the training items; the
plugin kept is the one with the lowest validation `monitor`, "loss" by default), a
periodic step decay (`lr_step_every` / `lr_step_every_epochs`, factor `lr_gamma`) or a
cosine decay to `lr_min` (default 0), and its own default batch size (`batch_size`, when
none is given; else 4); the warm-up may be given in epochs too (`warmup_epochs`, when
--warmup-steps is 0). Adapters
may regroup the items (`prepare_items`: e.g. one union target per image) and validate
in their own way (`validate`).

Determinism: everything random at step s (which instances, which prompt kind, the prompt
itself, the loss's sample points) is drawn from generators seeded by (seed, s, item), not
from a running RNG, so a resumed run, or the same global batch split over N processes,
computes exactly what one uninterrupted process would.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed as dist_utils
from .api import AdapterOutput, PluginAdapter, TrainPrompt, build_adapter
from .events import EventStream
from .features import FeatureCache
from .items import TrainItem, items_from_coco
from .losses import mask_loss
from .prompts import make_prompt, sample_kind, to_frame

STATE_FILE = "train_state.pt"


@dataclass
class TrainConfig:
    engine: str
    backbone: str
    data: str | None = None                 # COCO instances json
    images: str | None = None               # its images folder
    out: str = "runs/train"
    steps: int | None = None                # default: `epochs` over the training instances
    epochs: float = 1.0
    batch_size: int | None = None           # global (split over processes); None: the
    #                                         engine's recipe ("batch_size"), else 4
    lr: float | None = None                 # None: the engine's recipe
    weight_decay: float | None = None
    optimizer: str | None = None            # "adam" | "adamw"
    schedule: str | None = None             # "constant" | "step" | "cosine"
    lr_step_at: float | None = None         # "step": fraction of training at which lr x0.1
    warmup_steps: int = 0
    grad_clip: float | None = None          # max gradient norm; None = off
    prompt_mix: dict[str, float] | None = None
    num_points: int | None = None           # loss sample points; None: min(12544, S*S/4)
    seed: int = 0
    checkpoint_every: int = 100
    resume: bool = False
    val_fraction: float = 0.1
    cache_dir: str | None = None            # None: default_feature_dir()
    device: str | None = None
    events: str | None = None               # "-", a path, or None
    progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)   # adapter options


@dataclass
class TrainResult:
    plugin: Path | None
    steps: int
    final_loss: float
    losses: list[float]
    metrics: dict[str, float]
    encoder_calls: int


class Trainer:
    def __init__(self, config: TrainConfig, adapter: PluginAdapter | None = None,
                 items: list[TrainItem] | None = None, val_items: list[TrainItem] | None = None):
        self.cfg = config
        self.info = dist_utils.from_env()
        self.out = Path(config.out)
        self.events = EventStream(config.events, progress=config.progress,
                                  enabled=self.info.is_main)
        try:
            self._setup(adapter, items, val_items)
        except BaseException as exc:   # bad data or backbone: say so in the stream too
            self.events.emit("error", message=f"{type(exc).__name__}: {exc}")
            self.events.close()
            raise

    def _setup(self, adapter, items, val_items) -> None:
        from engines.runtime import choose_device
        config = self.cfg
        self.device = choose_device(config.device)
        torch.manual_seed(config.seed)   # plugin initialisation is part of the run's identity
        self.adapter = adapter or build_adapter(config.engine, config.backbone, **config.options)
        self.adapter.to(self.device)
        self.recipe = {**self.adapter.default_recipe(), **_overrides(config)}
        if items is None:
            items, val_items = items_from_coco(config.data, config.images, config.val_fraction,
                                               config.seed, self.recipe.get("occlusion", 0.0))
        items = self.adapter.prepare_items(items, train=True, seed=config.seed)
        val_items = self.adapter.prepare_items(val_items or [], train=False, seed=config.seed)
        if not items:
            raise ValueError("no training instances: the dataset is empty after the split")
        self.items, self.val_items = items, val_items or []
        self.batch_size = int(config.batch_size or self.recipe.get("batch_size", 4))
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        self.steps_per_epoch = max(1, math.ceil(len(self.items) / self.batch_size))
        self.best: dict[str, Any] | None = None    # lowest validation `monitor` so far
        cache_dir = config.cache_dir or default_feature_dir()
        self.features = FeatureCache(self.adapter, cache_dir) if self.adapter.cacheable else None
        side = self.adapter.side
        self.num_points = config.num_points or min(12544, side * side // 4)
        self.steps = config.steps or max(1, math.ceil(config.epochs * len(self.items) / self.batch_size))

    # ---------------------------------------------------------------- the loop
    def run(self) -> TrainResult:
        try:
            return self._run()
        except BaseException as exc:   # the event stream says why it stopped, then re-raise
            message = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"{type(exc).__name__}: {exc}"
            self.events.emit("error", message=message)
            self.events.close()
            raise

    def _run(self) -> TrainResult:
        cfg, info = self.cfg, self.info
        with dist_utils.process_group(info, self.device):
            model = dist_utils.wrap(self.adapter, info, self.device)
            params = [p for p in self.adapter.trainable.parameters() if p.requires_grad]
            optimizer = _optimizer(self.recipe, self.adapter.param_groups(params, self.recipe) or params)
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
            start = self._resume(optimizer, scheduler)
            self.events.emit("start", engine=cfg.engine, backbone=self.adapter.backbone_identity(),
                             steps=self.steps, batch_size=self.batch_size, world=info.world,
                             out=str(self.out), start_step=start,
                             trainable_parameters=sum(p.numel() for p in params))
            self._warm_cache()
            losses: list[float] = []
            t0 = time.perf_counter()
            val_every, patience = self._every("val_every"), self._every("early_stop")
            last = self.steps
            for step in range(start, self.steps):
                batch = dist_utils.shard(self._global_batch(step), info)
                loss = self._train_step(model, optimizer, params, step, batch)
                scheduler.step()
                losses.append(loss)
                rate = (step + 1 - start) * self.batch_size / max(time.perf_counter() - t0, 1e-9)
                self.events.emit("step", step=step + 1, steps=self.steps, loss=loss,
                                 lr=optimizer.param_groups[0]["lr"], instances_per_s=round(rate, 2))
                if val_every and self.val_items and (step + 1) % val_every == 0 \
                        and step + 1 < self.steps and self._validate_at(step + 1, patience):
                    last = step + 1
                    self.events.emit("early_stop", step=last, best_step=self.best["step"])
                    break
                if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < self.steps:
                    self._save_state(step + 1, optimizer, scheduler)
            self._save_state(last, optimizer, scheduler)   # the last state, before any best is restored
            metrics = self._final_metrics(last)
            self.steps_done = last
            plugin = self._export(metrics) if info.is_main else None
            dist_utils.barrier(info)
        self.events.emit("done", plugin=str(plugin) if plugin else None, metrics=metrics,
                         seconds=round(time.perf_counter() - t0, 2))
        self.events.close()
        return TrainResult(plugin, last, losses[-1] if losses else float("nan"), losses,
                           metrics, self.features.stats.encoder_calls if self.features else 0)

    def _train_step(self, model, optimizer, params, step: int, batch: list[int]) -> float:
        self.adapter.train()
        features, prompts, gts, frames = self._batch_inputs(step, batch)
        with _autocast(self.device):
            out: AdapterOutput = model(features, prompts)
        base = self.adapter

        def loss_fn(i: int, logits: torch.Tensor) -> torch.Tensor:
            gen = torch.Generator().manual_seed(_seed(self.cfg.seed, step, batch[i], 1))
            return mask_loss(logits.float(), gts[i:i + 1], num_points=self.num_points,
                             generator=gen)["total"]

        loss = base.compute_loss(out, gts, loss_fn, frames=frames)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.recipe.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(params, float(self.recipe["grad_clip"]))
        optimizer.step()
        value = loss.detach().float().cpu()
        if self.info.enabled:   # report the global mean loss, the same on every rank
            torch.distributed.all_reduce(value)
            value = value / self.info.world
        return float(value)

    # ---------------------------------------------------------------- inputs
    def _global_batch(self, step: int) -> list[int]:
        """Item indices of the global batch at `step`: consecutive slices of a stream of
        per-epoch permutations, each seeded by (seed, epoch)."""
        n, size = len(self.items), self.batch_size
        out = []
        for pos in range(step * size, (step + 1) * size):
            epoch, offset = divmod(pos, n)
            perm = np.random.default_rng(_seed(self.cfg.seed, epoch, 0, 2)).permutation(n)
            out.append(int(perm[offset]))
        return out

    def _batch_inputs(self, step: int, batch: list[int]):
        feats: dict[str, list[torch.Tensor]] = {}
        prompts: list[TrainPrompt] = []
        gts, frames = [], []
        mix = self.recipe["prompt_mix"]
        for index in batch:
            item = self.items[index]
            rng = np.random.default_rng(_seed(self.cfg.seed, step, index, 0))
            frame = self.adapter.frame(item.image_size)
            gt = item.frame_mask(frame)
            frames.append(frame)
            kind = sample_kind(mix, rng)
            stored = None if item.stored_prompt is None else to_frame(item.stored_prompt, frame)
            prompt = make_prompt(kind, gt, rng, stored=stored, **self._prompt_options(kind))
            prompts.append(prompt)
            gts.append(torch.from_numpy(gt))
            for k, v in self._features(item).items():
                feats.setdefault(k, []).append(v)
            for k, v in self.adapter.item_inputs(item, rng).items():
                feats.setdefault(k, []).append(v)
        features = {k: torch.stack(v).to(self.device) for k, v in feats.items()}
        gt = torch.stack(gts)[:, None].float().to(self.device)
        return features, prompts, gt, frames

    def _prompt_options(self, kind: str) -> dict[str, Any]:
        options = dict(self.recipe.get("prompt_options", {}).get(kind, {}))
        if kind == "noisy-mask":
            options.setdefault("low_res", self.adapter.mask_prompt_side)
        if kind == "noisy-box" and "noisy_box_scale" in self.recipe:
            options.setdefault("scale", self.recipe["noisy_box_scale"])
        return options

    def _features(self, item: TrainItem) -> dict[str, torch.Tensor]:
        if self.features is None:   # the encoder trains: hand over pixels
            return {"image": self.adapter.preprocess(item.load_image())}
        return self.features.get(item.image_key, item.load_image)

    def _warm_cache(self) -> None:
        if self.features is None:
            return
        self.features.warm(self.items,
                           lambda done, total: self.events.emit("encode", done=done, total=total))

    # ---------------------------------------------------------------- schedule, state
    def _every(self, key: str) -> int | None:
        """A recipe period in steps: `key` (steps) or `key_epochs` (epochs), else None."""
        if self.recipe.get(key):
            return max(1, int(self.recipe[key]))
        epochs = self.recipe.get(f"{key}_epochs")
        return max(1, round(float(epochs) * self.steps_per_epoch)) if epochs else None

    def _lr_factor(self, step: int) -> float:
        warm = self.cfg.warmup_steps or self._every("warmup") or 0
        factor = min(1.0, (step + 1) / warm) if warm else 1.0
        schedule = self.recipe.get("schedule", "constant")
        every = self._every("lr_step_every")
        if schedule == "step" and every:      # x lr_gamma every `every` steps (DIS recipe)
            factor *= float(self.recipe.get("lr_gamma", 0.5)) ** (step // every)
        elif schedule == "step":
            at = float(self.recipe.get("lr_step_at", 10 / 12))
            factor *= 0.1 if step >= round(at * self.steps) else 1.0
        elif schedule == "cosine":             # to lr_min (default 0) at the last step
            floor = min(1.0, float(self.recipe.get("lr_min", 0.0)) / float(self.recipe.get("lr", 1e-3)))
            cosine = 0.5 * (1 + math.cos(math.pi * min(step, self.steps) / self.steps))
            factor *= floor + (1 - floor) * cosine
        return factor

    def _save_state(self, step: int, optimizer, scheduler) -> None:
        if not self.info.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / STATE_FILE
        tmp = path.with_name(path.name + ".part")
        state = {"step": step, "trainable": self.adapter.plugin_state(),
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "config": json.dumps(asdict(self.cfg), default=str)}
        if self.best is not None:
            state["best"] = {**self.best, "metrics": json.dumps(self.best["metrics"])}
        torch.save(state, tmp)
        tmp.replace(path)
        self.events.emit("checkpoint", step=step, path=str(path))

    def _resume(self, optimizer, scheduler) -> int:
        path = self.out / STATE_FILE
        if not self.cfg.resume or not path.exists():
            return 0
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.adapter.load_plugin_state(state["trainable"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if "best" in state:
            self.best = {**state["best"], "metrics": json.loads(state["best"]["metrics"])}
        return int(state["step"])

    def _export(self, metrics: dict[str, float]) -> Path:
        name = f"{self.cfg.engine}-{self.adapter.backbone_identity().replace(':', '-')}"
        return self.adapter.export(self.out / name, metrics=metrics, steps=self.steps_done,
                                   training_data=_data_hash(self.cfg), recipe=self.recipe,
                                   seed=self.cfg.seed, batch_size=self.batch_size)

    def validate(self) -> dict[str, float]:
        return self.adapter.validate(self.val_items, self._features, seed=self.cfg.seed)

    def _validate_at(self, step: int, patience: int | None) -> bool:
        """Validate, keep the best plugin state; True when training should stop (no
        improvement of the monitored value for `patience` steps)."""
        metrics = self.validate()
        self.events.emit("validate", step=step, metrics=metrics)
        key = self.recipe.get("monitor", "loss")
        value = metrics.get(key)
        if value is not None and (self.best is None or value < self.best["value"]):
            self.best = {"value": float(value), "step": step, "metrics": metrics,
                         "state": self.adapter.plugin_state()}
        return bool(patience and self.best is not None and step - self.best["step"] >= patience)

    def _final_metrics(self, step: int) -> dict[str, float]:
        """The metrics of the plugin that is exported: the last one's or, when periodic
        validation saw a better one, that one's (its state is loaded back)."""
        if not self.val_items:
            return {}
        best = self.best
        metrics = best["metrics"] if best is not None and best["step"] == step else self.validate()
        value = metrics.get(self.recipe.get("monitor", "loss"))
        if best is None or best["step"] == step or value is None or value <= best["value"]:
            return metrics
        self.adapter.load_plugin_state(best["state"])
        return {**best["metrics"], "best_step": best["step"]}


# -------------------------------------------------------------------- helpers
def default_feature_dir() -> Path:
    """Beside the embedding cache (never inside the models folder, where plugins live)."""
    from engines.files import default_cache_dir
    return default_cache_dir().parent / "train-features"


def _seed(*parts: int) -> int:
    """A 63-bit seed from integers (stable across processes and Python runs)."""
    digest = hashlib.blake2b(repr(tuple(int(p) for p in parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _overrides(cfg: TrainConfig) -> dict[str, Any]:
    pairs = {"lr": cfg.lr, "weight_decay": cfg.weight_decay, "optimizer": cfg.optimizer,
             "schedule": cfg.schedule, "lr_step_at": cfg.lr_step_at, "grad_clip": cfg.grad_clip,
             "prompt_mix": cfg.prompt_mix}
    return {k: v for k, v in pairs.items() if v is not None}


def _optimizer(recipe: dict[str, Any], params) -> torch.optim.Optimizer:
    name = recipe.get("optimizer", "adam")
    kwargs = {"lr": float(recipe.get("lr", 1e-3)), "weight_decay": float(recipe.get("weight_decay", 0.0))}
    if name == "adam":
        return torch.optim.Adam(params, **kwargs)
    if name == "adamw":
        return torch.optim.AdamW(params, **kwargs)
    raise ValueError(f"unknown optimizer {name!r}; choose adam or adamw")


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    import contextlib
    return contextlib.nullcontext()


def _data_hash(cfg: TrainConfig) -> str | None:
    if not cfg.data:
        return None
    h = hashlib.sha256(Path(cfg.data).read_bytes())
    h.update(f"|val={cfg.val_fraction}|seed={cfg.seed}".encode())
    return h.hexdigest()[:16]
