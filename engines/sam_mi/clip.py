"""CLIP for SAM-MI (spec §2.1): the user's local open_clip / OpenAI CLIP file, text
embeddings of the typed names, and dense image features.

The architecture is read off the file's shapes (visual width, patch, depth, grid; text
width, depth, context, vocabulary), so ViT-B/16, ViT-L/14 and the tiny test model all load
through one path. OpenAI weights were trained with QuickGELU (`quick_gelu=True`, the
default); a LAION/DataComp open_clip ViT-B/16 wants `quick_gelu=False`. Dense features
are CAT-Seg's modification of the last block (`dense="catseg"`: the q·k attention is
skipped, each token becomes out_proj(v_proj(ln_1(x))) + x_cls, then the block's MLP,
ln_post and @proj) or MaskCLIP's value embedding (`dense="maskclip"`:
ln_post(out_proj(v_proj(ln_1(x)))) @ proj, no residual, no MLP), the usual training-free
choice. The positional embedding is resized (bicubic) to the input's grid, as CAT-Seg.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engines.files.checkpoints import load_into, load_state_dict
from engines.types import CheckpointError, EngineError

CLIP_MEAN = (122.7709383, 116.7460125, 104.09373615)     # CLIP's pixel mean / std (0-255)
CLIP_STD = (68.5005327, 66.6321579, 70.32316305)
DENSE_MODES = ("catseg", "maskclip")
ARCHS = {"ViT-B-16": (768, 16), "ViT-L-14": (1024, 14)}  # name -> (visual width, patch)
_META_KEYS = ("input_resolution", "context_length", "vocab_size")


def clip_shapes(state: dict[str, torch.Tensor], path: str | Path) -> dict[str, int]:
    """The CLIP architecture a state dict holds, or one CheckpointError naming the file."""
    has_text, has_visual = "token_embedding.weight" in state, "visual.conv1.weight" in state
    if not has_visual:
        what = ("a CLIP text tower only (no visual.* weights)" if has_text else
                "no CLIP weights at all (no visual.conv1.weight, no token_embedding.weight)")
        if "visual.trunk.patch_embed.proj.weight" in state or "visual.stem.0.weight" in state:
            what = "a timm/ConvNeXt CLIP, not a ViT CLIP"
        raise CheckpointError(f"checkpoint {path} holds {what}; sam-mi needs a whole ViT CLIP "
                              "(image and text towers), e.g. OpenAI's ViT-B/16")
    if not has_text:
        raise CheckpointError(f"checkpoint {path} holds a CLIP image tower only (no token_embedding); "
                              "sam-mi needs the text tower too for the typed names")
    conv = state["visual.conv1.weight"]
    width, patch = int(conv.shape[0]), int(conv.shape[-1])
    grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    layers = len({k.split(".")[3] for k in state if k.startswith("visual.transformer.resblocks.")})
    text_layers = len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")})
    return {"width": width, "patch": patch, "grid": grid, "layers": layers,
                "embed_dim": int(state["text_projection"].shape[1]),
                "text_width": int(state["ln_final.weight"].shape[0]), "text_layers": text_layers,
                "context": int(state["positional_embedding"].shape[0]),
                "vocab": int(state["token_embedding.weight"].shape[0])}


def arch_name(shapes: dict[str, int]) -> str:
    for name, (width, patch) in ARCHS.items():
        if (shapes["width"], shapes["patch"]) == (width, patch):
            return name
    return f"ViT-w{shapes['width']}/{shapes['patch']}"


def _head_width(width: int) -> int:
    return 64 if width >= 128 and width % 64 == 0 else 16   # 16: the tiny test model


def _open_clip():
    try:
        import open_clip
    except ImportError:
        raise EngineError("sam-mi needs the open_clip_torch package for CLIP "
                          "(pip install open_clip_torch==3.3.0)") from None
    return open_clip


def build_clip(shapes: dict[str, int], quick_gelu: bool = True):
    """An open_clip.CLIP of these shapes, random weights."""
    open_clip = _open_clip()
    vision = {"image_size": shapes["grid"] * shapes["patch"], "layers": shapes["layers"],
                  "width": shapes["width"], "patch_size": shapes["patch"],
                  "head_width": _head_width(shapes["width"])}
    text = {"context_length": shapes["context"], "vocab_size": shapes["vocab"],
                "width": shapes["text_width"], "heads": shapes["text_width"] // _head_width(shapes["text_width"]),
                "layers": shapes["text_layers"]}
    return open_clip.CLIP(shapes["embed_dim"], vision, text, quick_gelu=quick_gelu)


def read_clip_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A CLIP file as a state dict: safetensors, a torch state dict (open_clip's
    open_clip_pytorch_model.bin), or OpenAI's TorchScript archive (ViT-B-16.pt)."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors.torch import load_file
        try:
            state = load_file(str(path))
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"checkpoint {path} cannot be read as safetensors ({str(exc)[:120]}); "
                                  "expected a CLIP checkpoint") from None
    elif path.is_file() and _is_torchscript(path):
        try:
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"checkpoint {path} is a TorchScript archive that cannot be "
                                  f"loaded ({str(exc)[:120]}); expected OpenAI's CLIP") from None
    else:
        state = load_state_dict(path, expected="CLIP ViT")
    if isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items() if k not in _META_KEYS}
    return state


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def load_clip(path: str | Path, *, arch: str | None = None, quick_gelu: bool = True):
    """(open_clip.CLIP with the file's weights, its shapes); `arch` ("ViT-B-16",
    "ViT-L-14") is checked against the file."""
    state = read_clip_state(path)
    shapes = clip_shapes(state, path)
    name = arch_name(shapes)
    if arch is not None and arch != name:
        raise CheckpointError(f"checkpoint {path} is a CLIP {name} (visual width {shapes['width']}, "
                              f"patch {shapes['patch']}), not {arch}")
    model = build_clip(shapes, quick_gelu)
    state = {k: v for k, v in state.items() if k != "attn_mask"}
    load_into(model, state, path, expected=f"CLIP {name}")
    return model.eval(), shapes


def check_fits(shapes: dict[str, int], cfg, path: str | Path) -> None:
    """The CLIP file must have the widths the SAM-MI config (its plugin) was built for."""
    if (shapes["width"], shapes["patch"], shapes["embed_dim"]) != (cfg.clip_width, cfg.patch, cfg.embed_dim):
        raise CheckpointError(
            f"checkpoint {path} is a CLIP {arch_name(shapes)} (width {shapes['width']}, patch "
            f"{shapes['patch']}, embedding {shapes['embed_dim']}), but this SAM-MI needs width "
            f"{cfg.clip_width}, patch {cfg.patch}, embedding {cfg.embed_dim}")
    if max(cfg.taps) >= shapes["layers"] - 1:
        raise CheckpointError(f"checkpoint {path} has {shapes['layers']} visual blocks; the guidance "
                              f"taps {cfg.taps} need more")


class DenseClip(torch.nn.Module):
    """open_clip.CLIP -> text embeddings and (F_d, [F_tap1, F_tap2]) at the token grid."""

    def __init__(self, clip, taps: tuple[int, ...], context: int = 77):
        super().__init__()
        self.clip = clip
        self.taps = tuple(taps)
        self.context = context

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return _open_clip().tokenize(texts, context_length=self.context)

    def encode_text(self, texts: list[str], device=None) -> torch.Tensor:
        tokens = self.tokenize(texts).to(device or self.clip.token_embedding.weight.device)
        return F.normalize(self.clip.encode_text(tokens).float(), dim=-1)

    def forward(self, x: torch.Tensor, dense: str = "catseg") -> tuple[torch.Tensor, list[torch.Tensor]]:
        if dense not in DENSE_MODES:
            raise ValueError(f"dense must be one of {', '.join(DENSE_MODES)}")
        v = self.clip.visual
        x = v.conv1(x)
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(b, 1, c)
        x = torch.cat([cls, x], 1) + _resized_pos(v.positional_embedding, h, w).to(x.dtype)
        x = v.ln_pre(x)
        blocks = v.transformer.resblocks
        batch_first = getattr(v.transformer, "batch_first", True)
        taps = []
        for i, block in enumerate(blocks):
            if i == len(blocks) - 1:
                x = _dense_block(block, x, dense)
            else:
                x = block(x) if batch_first else block(x.transpose(0, 1)).transpose(0, 1)
            if i in self.taps:
                taps.append(x[:, 1:].transpose(1, 2).reshape(b, c, h, w))
        x = v.ln_post(x[:, 1:]) @ v.proj
        return x.transpose(1, 2).reshape(b, -1, h, w), taps


def _dense_block(block, x: torch.Tensor, dense: str) -> torch.Tensor:
    attn = block.attn
    d = x.shape[-1]
    y = block.ln_1(x)
    v = F.linear(y, attn.in_proj_weight[2 * d:], attn.in_proj_bias[2 * d:])
    v = block.ls_1(F.linear(v, attn.out_proj.weight, attn.out_proj.bias))
    if dense == "maskclip":
        return v
    v = v + x[:, :1]
    return v + block.ls_2(block.mlp(block.ln_2(v)))


def _resized_pos(pos: torch.Tensor, h: int, w: int) -> torch.Tensor:
    n = pos.shape[0] - 1
    g = round(n ** 0.5)
    if (g, g) == (h, w):
        return pos
    grid = pos[1:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=(h, w), mode="bicubic", align_corners=False)
    return torch.cat([pos[:1], grid[0].flatten(1).T.to(pos.dtype)], 0)


def clip_preprocess(image: np.ndarray, side: int, device) -> torch.Tensor:
    """H x W x 3 uint8 -> (1, 3, side, side) normalised; the whole image stretched (CAT-Seg)."""
    x = torch.as_tensor(image, device=device).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    mean = torch.tensor(CLIP_MEAN, device=device)[None, :, None, None]
    std = torch.tensor(CLIP_STD, device=device)[None, :, None, None]
    return (x - mean) / std


def describe_clip(shapes: dict[str, Any]) -> str:
    return f"CLIP {arch_name(shapes)} ({shapes['layers']} blocks, grid {shapes['grid']})"
