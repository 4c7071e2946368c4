"""CAT-Seg's cost aggregation (spec §2.2), the base open-vocabulary segmenter of SAM-MI.

Cost map S = cos(F_d, T) (B x K x h x w), embedded per class by a 7x7 conv 1 -> C; then
N_L layers, each a spatial pair of Swin blocks (window w, then shifted by w/2; q and k
see [cost embedding, appearance guidance], v the cost embedding only) and a class
aggregation (linear elu+1 attention across the K classes at each pooled position, with
the text guidance; classes padded to `pad_len` with learnable tokens). With more than
`pad_len` classes the `pad_len` classes of highest maximum cost are kept and the others
get logit -100. The decoder upsamples twice (ConvT 2x2), each time concatenating a
projected shallow CLIP feature (F_h1 at 2h, F_h2 at 4h), and a 3x3 head gives one logit
per class and pixel (B x K x 4h x 4w).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engines.sam_mi.config import SamMiConfig


def cost_map(dense: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """(B, D, h, w) dense features, (B or 1, K, D) text -> (B, K, h, w) cosine similarity."""
    dense = F.normalize(dense, dim=1)
    text = F.normalize(text, dim=-1)
    if text.shape[0] != dense.shape[0]:
        text = text.expand(dense.shape[0], -1, -1)
    return torch.einsum("bdhw,bkd->bkhw", dense, text)


def keep_top_classes(cost: torch.Tensor, limit: int) -> torch.Tensor | None:
    """CAT-Seg's K > pad_len rule: indices (B, limit) of the classes with the highest
    maximum cost, or None when K <= limit (or limit is 0: no rule)."""
    if limit <= 0 or cost.shape[1] <= limit:
        return None
    return cost.flatten(2).max(-1).values.topk(limit, dim=-1, sorted=False).indices


def _windows(x: torch.Tensor, s: int) -> torch.Tensor:
    b, h, w, c = x.shape
    x = x.view(b, h // s, s, w // s, s, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, s * s, c)


def _unwindows(x: torch.Tensor, s: int, b: int, h: int, w: int) -> torch.Tensor:
    x = x.view(b, h // s, w // s, s, s, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, -1)


class GuidedWindowAttention(nn.Module):
    def __init__(self, dim: int, guidance: int, heads: int):
        super().__init__()
        self.heads, self.dim = heads, dim
        self.scale = (dim // heads) ** -0.5
        self.q = nn.Linear(dim + guidance, dim)
        self.k = nn.Linear(dim + guidance, dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n, length, _ = x.shape
        split = lambda t: t.view(n, length, self.heads, -1).transpose(1, 2)
        q, k, v = split(self.q(x)) * self.scale, split(self.k(x)), split(self.v(x[..., :self.dim]))
        attn = q @ k.transpose(-2, -1)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(n // nw, nw, self.heads, length, length) + mask[None, :, None]).flatten(0, 1)
        out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(n, length, -1)
        return self.proj(out)


class GuidedSwinBlock(nn.Module):
    """A Swin block whose q / k also see the appearance guidance."""

    def __init__(self, dim: int, guidance: int, resolution: int, heads: int, window: int, shift: int):
        super().__init__()
        if resolution <= window:
            window, shift = resolution, 0
        self.window, self.shift, self.resolution = window, shift, resolution
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = GuidedWindowAttention(dim, guidance, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.register_buffer("attn_mask", self._mask() if shift else None, persistent=False)

    def _mask(self) -> torch.Tensor:
        r, s, t = self.resolution, self.window, self.shift
        region = torch.zeros(1, r, r, 1)
        cuts = (slice(0, -s), slice(-s, -t), slice(-t, None))
        for i, (hs, ws) in enumerate((a, b) for a in cuts for b in cuts):
            region[:, hs, ws] = i
        ids = _windows(region, s)[..., 0]
        diff = ids[:, None, :] - ids[:, :, None]
        return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)

    def forward(self, x: torch.Tensor, guidance: torch.Tensor | None) -> torch.Tensor:
        b, length, c = x.shape
        r = self.resolution
        y = self.norm1(x).view(b, r, r, c)
        if guidance is not None:
            y = torch.cat([y, guidance.view(b, r, r, -1)], -1)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
        y = _unwindows(self.attn(_windows(y, self.window), self.attn_mask), self.window, b, r, r)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        x = x + y.reshape(b, length, c)
        return x + self.mlp(self.norm2(x))


class SpatialAggregation(nn.Module):
    """The Swin pair over each class's cost embedding (x: B C K h w; guidance B G h w)."""

    def __init__(self, cfg: SamMiConfig):
        super().__init__()
        r, g = cfg.tokens, cfg.appearance_proj
        self.block_1 = GuidedSwinBlock(cfg.hidden, g, r, cfg.heads, cfg.window, 0)
        self.block_2 = GuidedSwinBlock(cfg.hidden, g, r, cfg.heads, cfg.window, cfg.window // 2)
        self.guidance_norm = nn.LayerNorm(g)

    def forward(self, x: torch.Tensor, guidance: torch.Tensor | None) -> torch.Tensor:
        b, c, k, h, w = x.shape
        y = x.permute(0, 2, 3, 4, 1).reshape(b * k, h * w, c)
        if guidance is not None:
            guidance = guidance.flatten(2).transpose(1, 2)
            guidance = self.guidance_norm(guidance).repeat_interleave(k, 0)
        y = self.block_2(self.block_1(y, guidance), guidance)
        return y.view(b, k, h, w, c).permute(0, 4, 1, 2, 3)


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = 1e-6,
                     counts: torch.Tensor | None = None):
    """elu+1 linear attention ("Transformers are RNNs"); q (N, L, H, D), k, v (N, S, H, D).
    `counts` (S,): how many times each key / value stands in the sequence (identical
    padding tokens given once), else once each."""
    q, k = F.elu(q) + 1, F.elu(k) + 1
    n = v.shape[1] if counts is None else float(counts.sum())
    if counts is not None:
        k = k * counts.to(k.dtype)[None, :, None, None]
    kv = torch.einsum("nshd,nshv->nhdv", k, v / n)
    z = 1 / (torch.einsum("nlhd,nhd->nlh", q, k.sum(1)) + eps)
    return torch.einsum("nlhd,nhdv,nlh->nlhv", q, kv, z) * n


class ClassAggregation(nn.Module):
    """Linear attention across the classes at each pooled position; classes padded to
    `pad_len` with a learnable cost token and a learnable text-guidance token."""

    def __init__(self, cfg: SamMiConfig):
        super().__init__()
        c, g = cfg.hidden, cfg.text_proj
        self.heads, self.pad_len, self.pooling = cfg.heads, cfg.pad_len, cfg.pooling
        self.q, self.k, self.v = nn.Linear(c + g, c), nn.Linear(c + g, c), nn.Linear(c, c)
        self.mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.ReLU(), nn.Linear(4 * c, c))
        self.norm1, self.norm2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.padding_tokens = nn.Parameter(torch.zeros(1, c)) if cfg.pad_len > 0 else None
        self.padding_guidance = nn.Parameter(torch.zeros(1, g)) if cfg.pad_len > 0 else None

    def pad(self, x: torch.Tensor, guidance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, K, C), guidance (N, K, G) -> padded to pad_len along K."""
        extra = self.pad_len - x.shape[1]
        if self.padding_tokens is None or extra <= 0:
            return x, guidance
        n = x.shape[0]
        x = torch.cat([x, self.padding_tokens.expand(n, extra, -1)], 1)
        guidance = torch.cat([guidance, self.padding_guidance.expand(n, extra, -1)], 1)
        return x, guidance

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """x: B C K h w; text: B K G."""
        b, c, k, h, w = x.shape
        pooled = F.avg_pool2d(x.permute(0, 2, 1, 3, 4).reshape(b * k, c, h, w), self.pooling)
        ph, pw = pooled.shape[-2:]
        y = pooled.view(b, k, c, ph * pw).permute(0, 3, 1, 2).reshape(b * ph * pw, k, c)
        g = text.repeat_interleave(ph * pw, 0)
        # the pad_len - K padding tokens are identical: one of them, counted that many
        # times, gives the real classes the same attention (their own outputs are dropped)
        extra = self.pad_len - k if self.padding_tokens is not None else 0
        keys, kg, counts = y, g, None
        if extra > 0:
            keys = torch.cat([y, self.padding_tokens.expand(y.shape[0], 1, -1)], 1)
            kg = torch.cat([g, self.padding_guidance.expand(g.shape[0], 1, -1)], 1)
            counts = torch.tensor([1.0] * k + [float(extra)], device=y.device)
        z, zk = self.norm1(y), self.norm1(keys)
        zg, zkg = torch.cat([z, g], -1), torch.cat([zk, kg], -1)
        heads = lambda t: t.view(t.shape[0], t.shape[1], self.heads, -1)
        att = linear_attention(heads(self.q(zg)), heads(self.k(zkg)), heads(self.v(zk)), counts=counts)
        y = y + att.flatten(2)
        y = y + self.mlp(self.norm2(y))
        y = y.view(b, ph, pw, k, c).permute(0, 3, 4, 1, 2).reshape(b * k, c, ph, pw)
        y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=True)
        return x + y.view(b, k, c, h, w).transpose(1, 2)


class AggregatorLayer(nn.Module):
    def __init__(self, cfg: SamMiConfig):
        super().__init__()
        self.swin_block = SpatialAggregation(cfg)
        self.attention = ClassAggregation(cfg)

    def forward(self, x, appearance, text):
        return self.attention(self.swin_block(x, appearance), text)


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        groups = max(1, cout // 16)
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(groups, cout),
                         nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                         nn.GroupNorm(groups, cout), nn.ReLU(inplace=True))


class Up(nn.Module):
    """ConvT 2x2 (cin -> cin - guidance) + concat the guidance + DoubleConv(cin -> cout)."""

    def __init__(self, cin: int, cout: int, guidance: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin - guidance, 2, stride=2)
        self.conv = DoubleConv(cin, cout)

    def forward(self, x: torch.Tensor, guidance: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        k = x.shape[0] // guidance.shape[0]
        return self.conv(torch.cat([x, guidance.repeat_interleave(k, 0)], 1))


class CostAggregator(nn.Module):
    """Cost map -> per-class logits at 4h x 4w (CAT-Seg's Aggregator)."""

    def __init__(self, cfg: SamMiConfig):
        super().__init__()
        self.cfg = cfg
        self.conv1 = nn.Conv2d(1, cfg.hidden, 7, padding=3)
        self.guidance_projection = nn.Sequential(
            nn.Conv2d(cfg.embed_dim, cfg.appearance_proj, 3, padding=1), nn.ReLU())
        self.text_guidance_projection = nn.Sequential(nn.Linear(cfg.embed_dim, cfg.text_proj), nn.ReLU())
        self.decoder_guidance_projection = nn.ModuleList(
            nn.Sequential(nn.Conv2d(d, p, 3, padding=1), nn.ReLU())
            for d, p in zip(cfg.guidance_dims, cfg.guidance_proj))
        self.layers = nn.ModuleList(AggregatorLayer(cfg) for _ in range(cfg.layers))
        self.decoder1 = Up(cfg.hidden, cfg.decoder_dims[0], cfg.guidance_proj[0])
        self.decoder2 = Up(cfg.decoder_dims[0], cfg.decoder_dims[1], cfg.guidance_proj[1])
        self.head = nn.Conv2d(cfg.decoder_dims[1], 1, 3, padding=1)

    def embed_cost(self, cost: torch.Tensor) -> torch.Tensor:
        b, k, h, w = cost.shape
        return self.conv1(cost.reshape(b * k, 1, h, w)).view(b, k, -1, h, w).transpose(1, 2)

    def aggregate(self, embedded: torch.Tensor, appearance: torch.Tensor | None,
                  text: torch.Tensor) -> torch.Tensor:
        """embedded (B C K h w), raw appearance guidance (B D h w), text (B K D) -> same shape."""
        a = self.guidance_projection(appearance) if appearance is not None else None
        t = self.text_guidance_projection(F.normalize(text, dim=-1))
        for layer in self.layers:
            embedded = layer(embedded, a, t)
        return embedded

    def decode(self, x: torch.Tensor, guidance: list[torch.Tensor]) -> torch.Tensor:
        b, c, k, h, w = x.shape
        g = [proj(f) for proj, f in zip(self.decoder_guidance_projection, guidance)]
        y = x.transpose(1, 2).reshape(b * k, c, h, w)
        y = self.head(self.decoder2(self.decoder1(y, g[0]), g[1]))
        return y.view(b, k, *y.shape[-2:])

    def forward(self, dense: torch.Tensor, text: torch.Tensor, appearance: torch.Tensor | None,
                guidance: list[torch.Tensor]) -> torch.Tensor:
        """dense F_d (B D h w), text T (B or 1, K, D), appearance guidance (B D h w),
        decoder guidance [F_h1, F_h2] -> logits (B, K, 4h, 4w)."""
        cost = cost_map(dense, text)
        text = F.normalize(text, dim=-1).expand(dense.shape[0], -1, -1)
        classes = cost.shape[1]
        keep = keep_top_classes(cost, self.cfg.pad_len)
        if keep is not None:
            cost = torch.gather(cost, 1, keep[..., None, None].expand(-1, -1, *cost.shape[-2:]))
            text = torch.gather(text, 1, keep[..., None].expand(-1, -1, text.shape[-1]))
        logits = self.decode(self.aggregate(self.embed_cost(cost), appearance, text), guidance)
        if keep is None:
            return logits
        out = logits.new_full((logits.shape[0], classes, *logits.shape[-2:]), -100.0)
        return out.scatter(1, keep[..., None, None].expand(-1, -1, *logits.shape[-2:]), logits)
