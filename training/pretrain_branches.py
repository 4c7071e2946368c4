"""Pre-train small stand-ins of PMG-SAM's two frozen branches on a COCO export, for
when the real files (timm `hiera_base_plus_224.mae`, the official `u2net.pth`) cannot be
downloaded: a small timm Hiera and the official small U²-Net (U2NETP), each trained on
salient-object targets (the union of an image's instance masks) and saved in its
official file layout, so `engines.pmg_sam` and `annotator train pmg-sam` load them
unchanged.

- Hiera: timm's Hiera at a small HieraSpec under a light saliency head (a 1x1 lateral
  per stage, summed at stride 4, a 1x1 to one logit); BCE + Dice at stride 4. Saved as
  the trunk's timm state dict (`small_hiera.pth`); the head is dropped.
- U²-Net: the whole official U2NETP (encoder, decoder, six side outputs, fusion conv)
  with its paper's loss (BCE on the fused and the six side maps) plus Dice on the fused
  one, on the `u2net_size` copy PMG-SAM feeds it. Saved as the full state dict
  (`u2net.pth`, the official u2netp.pth layout).
Both see PMG-SAM's own preprocessing (engines.pmg_sam.prepare: ImageNet normalisation,
resize-longest + pad), left-right flips as augmentation, AdamW with cosine decay, and
only the training side of the usual group split (`--val-fraction`, `--seed`). The
held-out side scores each branch's own saliency map (maxF / MAE / S-measure), written
with the settings to `branches.json`.

    python -m training.pretrain_branches --data D --images I --out DIR \
        [--hiera-steps N] [--u2net-steps N] [--batch-size B] [--side 256] [--u2net-size 64]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engines.pmg_sam import HieraSpec, build_timm_hiera, prepare, u2net_full_model

from .items import items_from_coco, union_items
from .losses import dense_bce_dice
from .sod_metrics import MapScores

SMALL_HIERA = dict(variant="hiera_tiny_224", embed_dim=16, num_heads=1, stages=(1, 2, 3, 1))


class HieraSaliency(nn.Module):
    """A timm Hiera trunk and a light saliency head on its four stages."""

    def __init__(self, spec: HieraSpec, width: int = 32):
        super().__init__()
        self.trunk = build_timm_hiera(spec)
        self.laterals = nn.ModuleList(nn.Conv2d(c, width, 1) for c in spec.channels)
        self.out = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.trunk.forward_intermediates(x, intermediates_only=True)
        size = feats[0].shape[-2:]
        fused = sum(F.interpolate(lat(f), size=size, mode="bilinear", align_corners=False)
                    for lat, f in zip(self.laterals, feats))
        return [self.out(F.gelu(fused))]


class U2NetP(nn.Module):
    """The official U2NETP forward over `u2net_full_model("u2netp")`'s modules: [d0, d1..d6]."""

    def __init__(self):
        super().__init__()
        self.net = u2net_full_model("u2netp")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        n = self.net
        enc = []
        for i in range(1, 7):
            enc.append(getattr(n, f"stage{i}")(x if i == 1 else F.max_pool2d(enc[-1], 2, 2, ceil_mode=True)))
        up = lambda a, like: F.interpolate(a, size=like.shape[2:], mode="bilinear", align_corners=False)  # noqa: E731
        d, dec = enc[5], [enc[5]]
        for i in range(5, 0, -1):      # stage5d .. stage1d
            d = getattr(n, f"stage{i}d")(torch.cat((up(d, enc[i - 1]), enc[i - 1]), 1))
            dec.append(d)
        dec = dec[::-1]                # [hx1d, hx2d, hx3d, hx4d, hx5d, hx6]
        sides = [up(getattr(n, f"side{i + 1}")(h), enc[0]) for i, h in enumerate(dec)]
        return [n.outconv(torch.cat(sides, 1)), *sides]


def saliency_loss(outputs: list[torch.Tensor], gt: torch.Tensor) -> torch.Tensor:
    """BCE on every output (U²-Net's deep supervision) + Dice on the first."""
    total = gt.new_zeros(())
    for k, logits in enumerate(outputs):
        bce, dice = dense_bce_dice(logits, gt)
        total = total + bce + (dice if k == 0 else 0.0)
    return total


def _tensors(items, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3, side, side) normalised padded images, (N, 1, side, side) targets."""
    xs, ys = [], []
    for item in items:
        x, (h, w) = prepare(item.load_image(), side)
        mask = torch.from_numpy(np.asarray(item.load_mask(), np.float32))[None, None]
        y = F.interpolate(mask, size=(h, w), mode="area")
        xs.append(x[0])
        ys.append(F.pad(y, (0, side - w, 0, side - h))[0])
    return torch.stack(xs), torch.stack(ys)


def _at(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def train_branch(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, *, size: int,
                 steps: int, batch_size: int, lr: float, seed: int, log) -> list[float]:
    """AdamW + cosine over `steps` batches drawn from per-epoch permutations."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps), eta_min=lr * 0.02)
    model.train()
    order, losses, start = torch.empty(0, dtype=torch.long), [], time.time()
    for step in range(steps):
        if len(order) < batch_size:
            order = torch.cat([order, torch.randperm(len(images), generator=gen)])
        idx, order = order[:batch_size], order[batch_size:]
        x, y = _at(images[idx].float(), size), (_at(targets[idx].float(), size) > 0.5).float()
        flip = torch.rand(len(idx), generator=gen) < 0.5
        x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
        loss = saliency_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 25 == 0 or step + 1 == steps:
            log(f"step {step + 1}/{steps} loss {np.mean(losses[-25:]):.4f} ({time.time() - start:.0f} s)")
    return losses


@torch.no_grad()
def score_branch(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, size: int,
                 sizes: list[tuple[int, int]], side: int) -> dict[str, float]:
    """maxF / MAE / S of the branch's own map on the held-out images (unpadded frame)."""
    model.eval()
    scores = MapScores()
    for x, y, (h, w) in zip(images, targets, sizes):
        logits = model(_at(x[None].float(), size))[0]
        prob = F.interpolate(logits, size=(side, side), mode="bilinear", align_corners=False).sigmoid()
        scores.add(prob[0, 0, :h, :w].double().numpy(), y[0, :h, :w].numpy() > 0.5)
    return scores.summary()


def pretrain(data: str, images: str, out: str | Path, *, hiera_steps: int, u2net_steps: int,
             batch_size: int = 8, side: int = 256, u2net_size: int = 64, lr: float = 1e-3,
             val_fraction: float = 0.1, seed: int = 0, hiera: dict | None = None,
             log=print) -> dict:
    """Train and save both branches into `out`; returns the record written to branches.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, val = items_from_coco(data, images, val_fraction, seed)
    train, val = union_items(train), union_items(val)
    if not train:
        raise ValueError(f"{data}: no training images on this split")
    x_tr, y_tr = _tensors(train, side)
    x_va, y_va = _tensors(val, side)
    sizes = [prepare(np.zeros((*it.image_size, 3), np.uint8), side)[1] for it in val]
    spec = HieraSpec(**{**SMALL_HIERA, **(hiera or {})}, img_size=side, pretrain_img_size=side)
    record: dict = {"data": str(data), "train_images": len(train), "val_images": len(val),
                    "side": side, "u2net_size": u2net_size, "batch_size": batch_size, "lr": lr,
                    "seed": seed, "hiera_spec": {k: list(v) if isinstance(v, tuple) else v
                                            for k, v in asdict(spec).items()}}
    for name, steps, size, build, save in (
            ("hiera", hiera_steps, side, lambda: HieraSaliency(spec), _save_hiera),
            ("u2net", u2net_steps, u2net_size, U2NetP, _save_u2net)):
        torch.manual_seed(seed)
        model = build()
        start = time.time()
        losses = train_branch(model, x_tr, y_tr, size=size, steps=steps, batch_size=batch_size,
                              lr=lr, seed=seed, log=lambda m, n=name: log(f"{n}: {m}"))
        val_scores = score_branch(model, x_va, y_va, size, sizes, side) if val else {}
        path = save(model, out)
        record[name] = {"file": path.name, "steps": steps, "seconds": round(time.time() - start, 1),
                        "parameters": sum(p.numel() for p in model.parameters()),
                        "loss_first_last_25": [float(np.mean(losses[:25])), float(np.mean(losses[-25:]))]
                        if losses else None, "val": val_scores}
        log(f"{name}: saved {path}; held out {val_scores}")
    (out / "branches.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def _save_hiera(model: HieraSaliency, out: Path) -> Path:
    path = out / "small_hiera.pth"
    torch.save({k: v.detach().contiguous() for k, v in model.trunk.state_dict().items()}, path)
    return path


def _save_u2net(model: U2NetP, out: Path) -> Path:
    from engines.pmg_sam import U2NET_FILE
    path = out / U2NET_FILE
    torch.save({k: v.detach().contiguous() for k, v in model.net.state_dict().items()}, path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.pretrain_branches",
                                description="Pre-train small PMG-SAM branches (Hiera, U²-Netp).")
    p.add_argument("--data", required=True, help="COCO instances file")
    p.add_argument("--images", required=True, help="its images folder")
    p.add_argument("--out", required=True, help="folder for small_hiera.pth, u2net.pth, branches.json")
    p.add_argument("--hiera-steps", type=int, default=300)
    p.add_argument("--u2net-steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--side", type=int, default=256, help="PMG-SAM input side (256)")
    p.add_argument("--u2net-size", type=int, default=64, help="U²-Net input side (64)")
    p.add_argument("--hiera", default=None, metavar="JSON", help="HieraSpec fields over the small default")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        hiera = json.loads(a.hiera) if a.hiera else None
        pretrain(a.data, a.images, a.out, hiera_steps=a.hiera_steps, u2net_steps=a.u2net_steps,
                 batch_size=a.batch_size, side=a.side, u2net_size=a.u2net_size, lr=a.lr,
                 val_fraction=a.val_fraction, seed=a.seed, hiera=hiera,
                 log=lambda m: print(m, flush=True))
    except (ValueError, json.JSONDecodeError) as exc:
        print(f"pretrain_branches: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
