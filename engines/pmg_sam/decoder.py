"""The guided mask decoder (spec §2.8): SAM's MaskDecoder with the Pre-Mask cut into
patch tokens as extra queries, two BAIM blocks (SAM's two-way equations) and SAM 2's
high-resolution injection into the transposed convolutions.

Parameter names follow `segment_anything` (`transformer.layers.{i}.self_attn.q_proj`,
`output_upscaling.0`, `output_hypernetworks_mlps`, `iou_prediction_head`, `iou_token`,
`mask_tokens`) and SAM 2 (`conv_s0`, `conv_s1`), so SAM ViT-B's decoder initialises it
where shapes match (`sam_init_state`, spec §2.8's init choice).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from engines.pmg_sam.config import PmgSamConfig


class Attention(nn.Module):
    """SAM's attention: project (optionally to d / downsample_rate), split heads,
    softmax(q k^T / sqrt(c)), recombine, project back."""

    def __init__(self, dim: int, num_heads: int, downsample_rate: int = 1):
        super().__init__()
        self.num_heads = num_heads
        internal = dim // downsample_rate
        self.q_proj = nn.Linear(dim, internal)
        self.k_proj = nn.Linear(dim, internal)
        self.v_proj = nn.Linear(dim, internal)
        self.out_proj = nn.Linear(internal, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        out = (attn @ v).transpose(1, 2)
        return self.out_proj(out.reshape(out.shape[0], out.shape[1], -1))


class MLPBlock(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class BAIM(nn.Module):
    """Bidirectional Attention Interaction Module = SAM's TwoWayAttentionBlock:
    Q1 = LN(Q + SA(Q+PE_q, Q+PE_q, Q))        (the first block: LN(SA(Q, Q, Q)), no PE, no residual)
    Q2 = LN(Q1 + CA_M2I(Q1+PE_q, K+PE_k, K)); Q3 = LN(Q2 + MLP(Q2))
    K' = LN(K + CA_I2M(K+PE_k, Q3+PE_q, Q3))  (dropped when not bidirectional: K' = K)."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, downsample_rate: int = 2,
                 skip_first_layer_pe: bool = False, bidirectional: bool = True):
        super().__init__()
        self.self_attn = Attention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = Attention(dim, num_heads, downsample_rate)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.bidirectional = bidirectional
        if bidirectional:
            self.norm4 = nn.LayerNorm(dim)
            self.cross_attn_image_to_token = Attention(dim, num_heads, downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor,
                key_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:
            queries = self.norm1(self.self_attn(q=queries, k=queries, v=queries))
        else:
            q = queries + query_pe
            queries = self.norm1(queries + self.self_attn(q=q, k=q, v=queries))
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q=queries + query_pe, k=k, v=keys))
        queries = self.norm3(queries + self.mlp(queries))
        if self.bidirectional:
            keys = self.norm4(keys + self.cross_attn_image_to_token(q=k, k=queries + query_pe, v=queries))
        return queries, keys


class TwoWayStack(nn.Module):
    """K BAIM blocks, then SAM's final token->image attention and LayerNorm."""

    def __init__(self, cfg: PmgSamConfig):
        super().__init__()
        d = cfg.transformer_dim
        self.layers = nn.ModuleList(
            BAIM(d, cfg.num_heads, cfg.mlp_dim, cfg.attention_downsample_rate,
                 skip_first_layer_pe=(i == 0), bidirectional=cfg.bidirectional)
            for i in range(cfg.baim_blocks))
        self.final_attn_token_to_image = Attention(d, cfg.num_heads, cfg.attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(d)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor):
        """image, image_pe: (B, d, h, w); tokens: (B, N, d) -> (queries, keys (B, hw, d))."""
        keys = image.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, query_pe=tokens, key_pe=key_pe)
        attn = self.final_attn_token_to_image(q=queries + tokens, k=keys + key_pe, v=keys)
        return self.norm_final_attn(queries + attn), keys


class MLP(nn.Module):
    """SAM's MLP: `num_layers` linears, ReLU between."""

    def __init__(self, dims: list[int]):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class LayerNorm2d(nn.Module):
    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class PositionEmbeddingRandom(nn.Module):
    """SAM's random-Fourier grid encoding (buffer `positional_encoding_gaussian_matrix`)."""

    def __init__(self, num_pos_feats: int):
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((2, num_pos_feats)))

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        gauss = self.positional_encoding_gaussian_matrix
        grid = torch.ones((h, w), device=gauss.device, dtype=torch.float32)
        y = (grid.cumsum(0) - 0.5) / h
        x = (grid.cumsum(1) - 0.5) / w
        coords = 2 * math.pi * ((2 * torch.stack([x, y], dim=-1) - 1) @ gauss)
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1).permute(2, 0, 1)


class GuidedMaskDecoder(nn.Module):
    def __init__(self, cfg: PmgSamConfig):
        super().__init__()
        d, p = cfg.transformer_dim, cfg.premask_patch
        self.cfg = cfg
        self.pe_layer = PositionEmbeddingRandom(d // 2)
        self.premask_embed = nn.Conv2d(1, d, kernel_size=p, stride=p)   # Pre-Mask patch tokens
        self.no_mask_embed = nn.Embedding(1, d)
        if cfg.premask_dense:
            c = cfg.mask_in_chans
            self.mask_downscaling = nn.Sequential(
                nn.Conv2d(1, c // 4, 2, 2), LayerNorm2d(c // 4), nn.GELU(),
                nn.Conv2d(c // 4, c, 2, 2), LayerNorm2d(c), nn.GELU(), nn.Conv2d(c, d, 1))
        self.iou_token = nn.Embedding(1, d)
        self.mask_tokens = nn.Embedding(cfg.num_mask_tokens, d)
        self.transformer = TwoWayStack(cfg)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, 2, 2), LayerNorm2d(d // 4), nn.GELU(),
            nn.ConvTranspose2d(d // 4, d // 8, 2, 2), nn.GELU())
        if cfg.high_res == "hiera":
            self.conv_s0 = nn.Conv2d(d, d // 8, 1)    # P4 -> added after the second ConvT
            self.conv_s1 = nn.Conv2d(d, d // 4, 1)    # P8 -> added after the first ConvT
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP([d, d, d, d // 8]) for _ in range(cfg.num_mask_tokens))
        self.iou_prediction_head = MLP([d] + [cfg.iou_head_hidden_dim] * (cfg.iou_head_depth - 1)
                                       + [cfg.num_mask_tokens])

    def premask_tokens(self, premask_logits: torch.Tensor) -> torch.Tensor:
        """(B, 1, R, R) logits -> (B, (R/P)², d) patch tokens plus their grid encoding."""
        tokens = self.premask_embed(premask_logits)              # (B, d, R/P, R/P)
        pe = self.pe_layer(tuple(tokens.shape[-2:]))[None].to(tokens.dtype)
        return (tokens + pe).flatten(2).transpose(1, 2)

    def upscale(self, src: torch.Tensor, high_res: list[torch.Tensor] | None) -> torch.Tensor:
        """(B, d, h, w) -> (B, d/8, 4h, 4w); with high-res [P4, P8] as SAM 2's decoder."""
        if high_res is None or self.cfg.high_res == "none":
            return self.output_upscaling(src)
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        p4, p8 = high_res
        x = act1(ln1(dc1(src) + self.conv_s1(p8)))
        return act2(dc2(x) + self.conv_s0(p4))

    def forward(self, image_embed: torch.Tensor, premask_logits: torch.Tensor,
                high_res: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embed P16 (B, d, h, w), Pre-Mask logits (B, 1, 4h, 4w), high_res [P4, P8]
        -> (mask logits (B, T, 4h, 4w), IoU predictions (B, T)) for the T mask tokens;
        PMG-SAM's output is token 0."""
        b, d, h, w = image_embed.shape
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight])[None].expand(b, -1, -1)
        tokens = torch.cat([out_tokens, self.premask_tokens(premask_logits)], dim=1)
        if self.cfg.premask_dense:
            dense = self.mask_downscaling(premask_logits)
        else:
            dense = self.no_mask_embed.weight.reshape(1, d, 1, 1).expand(b, d, h, w)
        src = image_embed + dense
        image_pe = self.pe_layer((h, w))[None].expand(b, -1, -1, -1).to(src.dtype)
        hs, keys = self.transformer(src, image_pe, tokens)
        n = self.cfg.num_mask_tokens
        src = keys.transpose(1, 2).reshape(b, d, h, w)
        upscaled = self.upscale(src, high_res)
        hyper = torch.stack([mlp(hs[:, 1 + i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], 1)
        c = upscaled.shape[1]
        masks = (hyper @ upscaled.reshape(b, c, -1)).reshape(b, n, *upscaled.shape[-2:])
        return masks, self.iou_prediction_head(hs[:, 0])


def sam_init_state(decoder: GuidedMaskDecoder, sam_state: Mapping[str, torch.Tensor]
                   ) -> dict[str, torch.Tensor]:
    """The tensors of a SAM checkpoint (`mask_decoder.*`, `prompt_encoder.pe_layer`,
    `no_mask_embed`, `mask_downscaling`) that fit this decoder by name and shape, keyed
    by the decoder's names: `decoder.load_state_dict(found, strict=False)` applies them
    (spec §2.8: Pre-Mask patch embedding, s0/s1 start random)."""
    own = decoder.state_dict()
    found = {}
    for key, value in sam_state.items():
        for prefix in ("mask_decoder.", "prompt_encoder."):
            if key.startswith(prefix):
                name = key[len(prefix):]
                if name in own and tuple(own[name].shape) == tuple(value.shape):
                    found[name] = value
    return found
