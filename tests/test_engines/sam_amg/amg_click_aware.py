"""A tiny SAM whose masks follow the click, for tests that must see box NMS, crop NMS and
the NMS after small-region removal actually suppress something.

With random weights every click's masks span the whole image (one box for all), so NMS
below 1.0 keeps one proposal and an equivalence test cannot tell NMS from a plain sort
(tried: swapping `engines.auto.nms` for a sort passed every other sam_amg test).
Eighty Adam steps on the real decoder (segment_anything's prompt encoder and mask decoder,
nothing replaced) teach it "a disc around the click, three radii": masks become local,
their boxes differ, and NMS at the reference's 0.7 keeps some and drops some. The
weights are whatever the steps give; the tests only need both sides to run the same
ones, and check that suppression did happen.

SAM only: the tiny SAM 2's decoder (8 heads of width 2) stayed on the empty-mask plateau
(disc target: up to 300 steps, lr 1e-3 to 2e-2, decoder widths 32 to 128; a half-plane
target: 100 steps reached 65 % pixel accuracy). The NMS,
crop and small-region code is the same for both proposers (Sam2AmgEngine overrides only
the decoding and the upsampling, which test_amg_equivalence.py covers).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from amg_helpers import photo

from engines.hosts import SamEngine, tiny_sam

RADII = (6.0, 10.0, 16.0)      # low-res pixels (tiny_sam's low-res grid is 64 x 64)


def click_aware_sam(seed: int = 1, steps: int = 80, batch: int = 16):
    """A trained tiny_sam (eval mode)."""
    torch.manual_seed(seed)
    model = tiny_sam(seed=seed)
    host = SamEngine(copy.deepcopy(model), backbone_key="train", device="cpu", exact=True)
    embedding = host.embed(photo(150, 200)).features["image_embed"]   # clicks vary, not images
    prompt_encoder, decoder = model.prompt_encoder, model.mask_decoder
    opt = torch.optim.Adam([*prompt_encoder.parameters(), *decoder.parameters()], lr=5e-3)
    side = host.input_side
    gen = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        for _ in range(steps):
            points = torch.rand(batch, 1, 2, generator=gen) * side
            labels = torch.ones(batch, 1, dtype=torch.int)
            sparse, dense = prompt_encoder(points=(points, labels), boxes=None, masks=None)
            logits = decoder(image_embeddings=embedding, image_pe=prompt_encoder.get_dense_pe(),
                             sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                             multimask_output=True)[0]
            loss = _disc_loss(logits, points / (side / logits.shape[-1]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def _disc_loss(logits: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Weighted BCE + Dice against discs of RADII around each click (low-res pixels); the
    weight and the Dice term keep it off the all-background plateau."""
    n = logits.shape[-1]
    yy, xx = torch.meshgrid(torch.arange(n) + 0.5, torch.arange(n) + 0.5, indexing="ij")
    dist = ((xx - centres[:, 0, 0, None, None]) ** 2 + (yy - centres[:, 0, 1, None, None]) ** 2).sqrt()
    target = torch.stack([(dist < r).float() for r in RADII], dim=1)
    prob = logits.sigmoid()
    dice = 1 - (2 * (prob * target).sum((-1, -2)) + 1) / (prob.sum((-1, -2)) + target.sum((-1, -2)) + 1)
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(4.0))
    return bce + dice.mean()
