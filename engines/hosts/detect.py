"""The one reader of SAM-family state dicts: which family a file is (`detect`), which
architecture, and a ViT SAM's full configuration (`sam_config_from_state`).

Only key names and tensor shapes are read, never values, so a memory-mapped file
(`engines.files.checkpoints.peek_state_dict`) costs nothing here, and nothing here
imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from engines.types import CheckpointError

# Meta's ViT SAMs: encoder width -> (name, depth). The width alone names a size (error
# messages, SamEngine's guess); the depth also has to match before a shape counts as
# official where any other shape would be built as a custom ("tiny") SAM (HQ-SAM).
VIT_SIZES = {768: ("vit_b", 12), 1024: ("vit_l", 24), 1280: ("vit_h", 32)}
# SAM 2.1's Hiera trunks: (patch-embedding width, number of blocks) -> name.
HIERA_SIZES = {(96, 12): "hiera_t", (96, 16): "hiera_s", (112, 24): "hiera_b+", (144, 48): "hiera_l"}

SAM2_TRUNK = "image_encoder.trunk."          # only SAM 2's image encoder has a trunk
VIT_POS_EMBED = "image_encoder.pos_embed"    # only a ViT SAM's encoder has one
TINYVIT_LAYERS = "image_encoder.layers."     # MobileSAM / Light HQ-SAM's TinyViT
HQ_TOKEN = ("mask_decoder.hf_token", "sam_mask_decoder.hf_token")   # HQ-SAM's output token

FAMILIES = ("sam", "sam2", "hq-sam", "hq-sam2", "unknown")


def vit_size_name(width: int) -> str | None:
    """vit_b / vit_l / vit_h for an official encoder width, else None."""
    size = VIT_SIZES.get(int(width))
    return size[0] if size else None


def is_sam2_state(state: Mapping) -> bool:
    return any(k.startswith(SAM2_TRUNK) for k in state)


def has_hq_token(state: Mapping) -> bool:
    return any(k.startswith(HQ_TOKEN) for k in state)


def _count(state: Mapping, prefix: str) -> int:
    return len({k[len(prefix):].split(".", 1)[0] for k in state if k.startswith(prefix)})


# --- SAM 2 ----------------------------------------------------------------------------
def guess_sam2_arch(state: Mapping) -> str | None:
    """hiera_t / hiera_s / hiera_b+ / hiera_l from the trunk's width and depth."""
    width = state.get(SAM2_TRUNK + "patch_embed.proj.weight")
    if width is None:
        return None
    return HIERA_SIZES.get((int(width.shape[0]), _count(state, SAM2_TRUNK + "blocks.")))


# --- ViT SAM --------------------------------------------------------------------------
@dataclass(frozen=True)
class SamConfig:
    """A ViT SAM's shape, enough to build it; `sam_config_from_state` reads it off a state dict."""
    img_size: int = 1024
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    qkv_bias: bool = True
    prompt_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256

    @property
    def arch(self) -> str:
        """Official name (vit_b/l/h) when the whole shape is official, else "tiny" (the
        name plugin metadata uses for any other ViT SAM, whichever engine reads it)."""
        size = VIT_SIZES.get(self.embed_dim)
        official = size is not None and size[1] == self.depth
        return size[0] if official and (self.img_size, self.prompt_dim) == (1024, 256) else "tiny"


CONFIG_KEYS = (VIT_POS_EMBED, "image_encoder.patch_embed.proj.weight",
               "image_encoder.blocks.0.attn.rel_pos_h", "image_encoder.blocks.0.mlp.lin1.weight",
               "image_encoder.neck.0.weight", "prompt_encoder.mask_downscaling.3.weight",
               "mask_decoder.transformer.layers.0.mlp.lin1.weight",
               "mask_decoder.iou_prediction_head.layers.0.weight")


def sam_config_from_state(state: Mapping, *, num_heads: int | None = None,
                          decoder_heads: int | None = None) -> SamConfig:
    """Infer a ViT SAM's configuration from its state dict's shapes.

    Encoder heads follow from the relative-position tables (head_dim); the decoder's head
    count leaves no trace in shapes: 8 for official-size decoders, else 2 (engines.hosts.tiny's),
    unless `decoder_heads` says otherwise. Raises CheckpointError (naming what the file
    looks like) when a key it needs is missing."""
    lacking = [k for k in CONFIG_KEYS if k not in state]
    if lacking:
        raise CheckpointError(f"cannot read a ViT SAM configuration from a state dict that looks "
                              f"like {describe(state)}: it has no {lacking[0]}")
    pos, proj = state[VIT_POS_EMBED], state["image_encoder.patch_embed.proj.weight"]
    embed_dim, patch, grid = int(proj.shape[0]), int(proj.shape[-1]), int(pos.shape[1])
    depth = _count(state, "image_encoder.blocks.")
    global_idx, window, head_dim = [], 14, None
    for i in range(depth):
        rel = state[f"image_encoder.blocks.{i}.attn.rel_pos_h"]
        size, head_dim = (int(rel.shape[0]) + 1) // 2, int(rel.shape[1])
        if size == grid:
            global_idx.append(i)
        else:
            window = size
    lin1 = state["image_encoder.blocks.0.mlp.lin1.weight"]
    iou_depth = _count(state, "mask_decoder.iou_prediction_head.layers.")
    prompt_dim = int(state["image_encoder.neck.0.weight"].shape[0])
    dec_mlp = int(state["mask_decoder.transformer.layers.0.mlp.lin1.weight"].shape[0])
    return SamConfig(
        img_size=grid * patch, patch_size=patch, embed_dim=embed_dim, depth=depth,
        num_heads=num_heads or embed_dim // head_dim, mlp_ratio=int(lin1.shape[0]) / embed_dim,
        window_size=window, global_attn_indexes=tuple(global_idx),
        qkv_bias="image_encoder.blocks.0.attn.qkv.bias" in state, prompt_dim=prompt_dim,
        mask_in_chans=int(state["prompt_encoder.mask_downscaling.3.weight"].shape[0]),
        decoder_depth=_count(state, "mask_decoder.transformer.layers."), decoder_mlp_dim=dec_mlp,
        decoder_heads=decoder_heads or (8 if (prompt_dim, dec_mlp) == (256, 2048) else 2),
        iou_head_depth=iou_depth,
        iou_head_hidden_dim=int(state["mask_decoder.iou_prediction_head.layers.0.weight"].shape[0])
        if iou_depth > 1 else 256)


def _readable_config(state: Mapping) -> SamConfig | None:
    """The configuration, or None for a ViT-like file that lacks a key it needs (e.g.
    every block's rel_pos table)."""
    try:
        return sam_config_from_state(state)
    except (CheckpointError, KeyError):
        return None


def tiny_sam_config(state: Mapping) -> dict | None:
    """The `engines.hosts.tiny.tiny_sam` keyword arguments that rebuild the model a state
    dict came from, or None when it is not a tiny SAM (official ViT-B/L/H widths are not
    tiny). Read from tensor shapes, so a trained tiny SAM saved as a plain state dict (the
    official checkpoint layout) loads like an official one."""
    pos = state.get(VIT_POS_EMBED)
    if pos is None or vit_size_name(pos.shape[-1]) is not None:
        return None
    config = _readable_config(state)
    if config is None:
        return None
    return {"img_size": config.img_size, "embed_dim": config.embed_dim, "depth": config.depth,
            "num_heads": config.num_heads, "prompt_dim": config.prompt_dim,
            "decoder_mlp_dim": config.decoder_mlp_dim, "window_size": config.window_size,
            "patch_size": config.patch_size}


def guess_sam_arch(state: Mapping) -> str | None:
    """SamEngine's name for a ViT SAM file: vit_b / vit_l / vit_h from the encoder width
    (a file of that width that does not fit gets load_into's message, naming the keys),
    "tiny" for a small SAM trained by `annotator train sam` (engines/hosts/tiny.py)."""
    pos = state.get(VIT_POS_EMBED)
    if pos is None:
        return None
    return vit_size_name(pos.shape[-1]) or ("tiny" if tiny_sam_config(state) else None)


# --- any file -------------------------------------------------------------------------
@dataclass(frozen=True)
class Detected:
    """What a state dict is. `arch`: hiera_* for SAM 2; for a ViT SAM the shape a
    builder must make (vit_b/l/h when exactly official, else "tiny"); "vit_tiny" for
    TinyViT; None when the file says too little. `config`: ViT SAMs only."""
    family: str
    arch: str | None = None
    config: SamConfig | None = None


def detect(state: Mapping) -> Detected:
    """Family (sam, sam2, hq-sam, hq-sam2 or unknown), architecture and configuration."""
    hq = has_hq_token(state)
    if is_sam2_state(state):
        return Detected("hq-sam2" if hq else "sam2", guess_sam2_arch(state))
    family = "hq-sam" if hq else "sam"
    if VIT_POS_EMBED in state:
        config = _readable_config(state)
        return Detected(family, config.arch if config else None, config)
    if any(k.startswith(TINYVIT_LAYERS) for k in state):
        return Detected(family, "vit_tiny")
    return Detected("unknown")


def describe(state: Mapping) -> str:
    """Best guess at what architecture a state dict belongs to, for error messages."""
    if is_sam2_state(state):
        width = state.get(SAM2_TRUNK + "patch_embed.proj.weight")
        if width is None:
            return "SAM 2 (?)"
        names = [name for (w, _), name in HIERA_SIZES.items() if w == int(width.shape[0])]
        return f"SAM 2 ({' or '.join(names) or 'unknown size'})"
    hq = any(k.startswith(HQ_TOKEN[0]) for k in state)
    pos = state.get(VIT_POS_EMBED)
    if pos is not None:
        size = vit_size_name(pos.shape[-1]) or f"ViT width {pos.shape[-1]}"
        return f"{'HQ-SAM' if hq else 'SAM'} ({size})"
    if any(k.startswith("image_encoder.") for k in state):
        return "HQ-SAM (TinyViT)" if hq else "a SAM-like model with an unknown encoder"
    return "not a SAM-family state dict"
