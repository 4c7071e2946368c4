"""Pre-train a small open_clip CLIP on a COCO export's category names, for SAM-MI's
experiment where no CLIP weights can be downloaded: the real `open_clip.CLIP` class at
`engines.sam_mi.tiny.tiny_clip`'s small size, trained so that its image features name
the categories the file holds, and saved as a plain open_clip state dict (what
`--option clip=FILE` loads).

Two losses, both cross-entropy against the categories' text embeddings ("a photo of a
{name}.", the engine's template) times CLIP's learned logit scale:
- global: each object's square crop (15 % margin) through the normal image path, as CLIP
  is trained on image-caption pairs;
- dense: whole images through the dense paths SAM-MI reads (the MaskCLIP value path of
  the training-free mode and CAT-Seg's modified last block), each patch labelled with the
  category covering at least half of it (other patches ignored).
Only the training side of the usual group split is seen (`--val-fraction`, `--seed`);
the held-out side's crop accuracy and patch accuracy are written to `clip.json`. Names
not in the file are never trained: this CLIP knows nothing about them.

    python -m training.pretrain_clip --data D --images I --out DIR [--steps N] [--batch-size B]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engines.sam_mi import DenseClip, clip_preprocess, tiny_clip

from .items import items_from_coco

TEMPLATE = "a photo of a {}."
SMALL = {"width": 64, "patch": 16, "image_size": 192, "layers": 4, "embed_dim": 64}


def _crop(image: np.ndarray, mask: np.ndarray, margin: float = 0.15) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    half = max(xs.max() - xs.min(), ys.max() - ys.min(), 8) * (0.5 + margin)
    h, w = mask.shape
    x0, x1 = int(max(0, cx - half)), int(min(w, cx + half + 1))
    y0, y1 = int(max(0, cy - half)), int(min(h, cy + half + 1))
    return image[y0:y1, x0:x1]


def _tensors(items, names: list[str], side: int, patch: int):
    """(crops, crop labels, images, patch labels with -1 = ignored) of items' images."""
    crops, crop_labels, images, patch_labels = [], [], [], []
    by_image: dict = {}
    for item in items:
        by_image.setdefault(item.source, []).append(item)
    for group in by_image.values():
        image = group[0].load_image()
        label = np.full(image.shape[:2], -1, np.int64)
        for item in group:
            mask = item.load_mask()
            if not mask.any():
                continue
            c = names.index(item.category)
            label[mask] = c
            crops.append(clip_preprocess(_crop(image, mask), side, "cpu")[0])
            crop_labels.append(c)
        images.append(clip_preprocess(image, side, "cpu")[0])
        grid = side // patch
        lab = torch.as_tensor(label)[None, None].float()
        lab = F.interpolate(lab, size=(grid * 8, grid * 8), mode="nearest")[0, 0].long()
        cells = lab.reshape(grid, 8, grid, 8).permute(0, 2, 1, 3).reshape(grid, grid, 64)
        counts = torch.stack([(cells == c).sum(-1) for c in range(len(names))], -1)
        best, arg = counts.max(-1)
        patch_labels.append(torch.where(best >= 32, arg, torch.full_like(arg, -1)))
    return (torch.stack(crops), torch.tensor(crop_labels), torch.stack(images),
            torch.stack(patch_labels))


def _flips(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each crop flipped left-right and / or upside down at random (the categories are
    shapes, which neither flip changes): 288 images are few for a CLIP."""
    lr, ud = (torch.rand(2, len(x), generator=gen) < 0.5)
    x = torch.where(lr[:, None, None, None], x.flip(-1), x)
    return torch.where(ud[:, None, None, None], x.flip(-2), x)


def _logits(features: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(..., D) or dense (B, D, h, w) features -> (..., K) / (B, h, w, K) scaled cosines."""
    if features.ndim == 4:
        features = features.movedim(1, -1)
    return scale.exp().clamp(max=100) * F.normalize(features, dim=-1) @ text.T


def _losses(dense: DenseClip, names: list[str], crops, crop_labels, images, patch_labels):
    clip = dense.clip
    text = dense.encode_text([TEMPLATE.format(n) for n in names])
    glob = F.cross_entropy(_logits(clip.encode_image(crops), text, clip.logit_scale), crop_labels)
    dense_loss = 0.0
    for mode in ("maskclip", "catseg"):
        feats, _ = dense(images, mode)
        logits = _logits(feats, text, clip.logit_scale)            # (B, h, w, K)
        dense_loss = dense_loss + F.cross_entropy(logits.reshape(-1, len(names)),
                                                  patch_labels.reshape(-1), ignore_index=-1)
    return glob, dense_loss / 2


@torch.no_grad()
def _accuracy(dense: DenseClip, names, crops, crop_labels, images, patch_labels) -> dict:
    text = dense.encode_text([TEMPLATE.format(n) for n in names])
    crop_acc = float((_logits(dense.clip.encode_image(crops), text, dense.clip.logit_scale)
                      .argmax(-1) == crop_labels).float().mean())
    out = {"crop_accuracy": crop_acc}
    for mode in ("maskclip", "catseg"):
        pred = _logits(dense(images, mode)[0], text, dense.clip.logit_scale).argmax(-1)
        valid = patch_labels >= 0
        out[f"patch_accuracy_{mode}"] = float((pred[valid] == patch_labels[valid]).float().mean())
    return out


def pretrain(data: str, images: str, out: str | Path, *, steps: int, batch_size: int,
             lr: float, val_fraction: float, seed: int, log=print) -> Path:
    train, val = items_from_coco(data, images, val_fraction, seed)
    names = sorted({i.category for i in train + val if i.category})
    if len(names) < 2:
        raise ValueError(f"{data}: need at least 2 named categories to train a CLIP on, got {names}")
    torch.manual_seed(seed)
    clip = tiny_clip(seed=seed, **SMALL).train()
    dense = DenseClip(clip, taps=())
    side, patch = SMALL["image_size"], SMALL["patch"]
    tr = _tensors(train, names, side, patch)
    va = _tensors(val, names, side, patch) if val else None
    log(f"{len(tr[0])} training objects on {len(tr[2])} images, {len(names)} categories: "
        f"{', '.join(names)}")
    opt = torch.optim.AdamW(clip.parameters(), lr=lr, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    gen = torch.Generator().manual_seed(seed)
    t0, history = time.perf_counter(), []
    for step in range(1, steps + 1):
        ci = torch.randint(len(tr[0]), (batch_size,), generator=gen)
        ii = torch.randint(len(tr[2]), (max(1, batch_size // 4),), generator=gen)
        crops, imgs, labels = _flips(tr[0][ci], gen), tr[2][ii], tr[3][ii]
        if torch.rand((), generator=gen) < 0.5:       # the same flip for images and their patches
            imgs, labels = imgs.flip(-1), labels.flip(-1)
        g, d = _losses(dense, names, crops, tr[1][ci], imgs, labels)
        loss = g + d
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(clip.parameters(), 1.0)
        opt.step()
        sched.step()
        history.append(loss.item())
        if step % 100 == 0 or step == steps:
            log(f"step {step}/{steps}: loss {np.mean(history[-100:]):.3f} (global {g.item():.3f}, "
                f"dense {d.item():.3f})")
    clip.eval()
    window = max(1, min(100, steps // 10))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "clip_small.pt"
    torch.save(clip.state_dict(), path)
    record = {"categories": names, "size": SMALL, "steps": steps, "batch_size": batch_size, "lr": lr,
              "seconds": round(time.perf_counter() - t0, 1),
              # mean over the first and last 100 steps (a tenth of a shorter run)
              "loss_first_last": [float(np.mean(history[:window])), float(np.mean(history[-window:]))],
              "held_out": _accuracy(dense, names, *va) if va else None}
    (out / "clip.json").write_text(json.dumps(record, indent=2) + "\n")
    log(f"saved {path}; held out: {record['held_out']}")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.pretrain_clip",
                                description="Pre-train a small CLIP on a COCO export's category names.")
    p.add_argument("--data", required=True, help="COCO instances file")
    p.add_argument("--images", required=True, help="its images folder")
    p.add_argument("--out", required=True, help="folder for clip_small.pt and clip.json")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1:
        print("pretrain_clip: error: --steps and --batch-size must be at least 1", file=sys.stderr)
        return 2
    try:
        pretrain(args.data, args.images, args.out, steps=args.steps, batch_size=args.batch_size,
                 lr=args.lr, val_fraction=args.val_fraction, seed=args.seed)
    except (OSError, ValueError) as exc:
        print(f"pretrain_clip: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
