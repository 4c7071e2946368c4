"""The frozen U²-Net branch (Qin et al. 2020): the six encoder stages En_1..En_6
(RSU7, RSU6, RSU5, RSU4, RSU4F, RSU4F), with the parameter names of the official
`model/u2net.py` so the official DUTS-trained `u2net.pth` loads unchanged.

Written here from the architecture (no code copied): REBNCONV = 3x3 conv (dilated) +
BatchNorm + ReLU; an RSU-L block is a small U-Net of depth L with max-pool downsampling,
bilinear upsampling and a residual `hx1d + hxin`; RSU-4F replaces pooling by dilation.
The official file also holds the decoder (stage5d..stage1d, side1..side6, outconv);
`load_u2net_encoder` checks those keys and shapes against the official layout too, so a
foreign file is refused by name, then loads only the encoder. The official small model
(U²-Netp, `u2netp.pth`: 64 channels out of every stage) reads the same way.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engines.files.checkpoints import mismatch_details
from engines.types import CheckpointError

# (block depth L or "4F", in, mid, out) of the official U2NET(3, 1): encoder then decoder.
OFFICIAL_ENCODER = (("7", 3, 32, 64), ("6", 64, 32, 128), ("5", 128, 64, 256),
                    ("4", 256, 128, 512), ("4F", 512, 256, 512), ("4F", 512, 256, 512))
OFFICIAL_DECODER = (("stage5d", "4F", 1024, 256, 512), ("stage4d", "4", 1024, 128, 256),
                    ("stage3d", "5", 512, 64, 128), ("stage2d", "6", 256, 32, 64),
                    ("stage1d", "7", 128, 16, 64))
OFFICIAL_SIDES = (("side1", 64), ("side2", 64), ("side3", 128), ("side4", 256), ("side5", 512),
                  ("side6", 512))
# the official small model U2NETP(3, 1) (u2netp.pth, 1.1 M parameters): 64 channels out
# of every stage, 16 inside
U2NETP_ENCODER = (("7", 3, 16, 64), ("6", 64, 16, 64), ("5", 64, 16, 64), ("4", 64, 16, 64),
                  ("4F", 64, 16, 64), ("4F", 64, 16, 64))
U2NETP_DECODER = (("stage5d", "4F", 128, 16, 64), ("stage4d", "4", 128, 16, 64),
                  ("stage3d", "5", 128, 16, 64), ("stage2d", "6", 128, 16, 64),
                  ("stage1d", "7", 128, 16, 64))
U2NETP_SIDES = tuple((f"side{i}", 64) for i in range(1, 7))
# variant -> (encoder, decoder, side convs) of the official model/u2net.py classes
LAYOUTS = {"u2net": (OFFICIAL_ENCODER, OFFICIAL_DECODER, OFFICIAL_SIDES),
           "u2netp": (U2NETP_ENCODER, U2NETP_DECODER, U2NETP_SIDES)}
EXPECTED = "U²-Net (official u2net.pth, U2NET(3, 1), 44 M parameters; or u2netp.pth)"


class REBNCONV(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, dirate: int = 1):
        super().__init__()
        self.conv_s1 = nn.Conv2d(in_ch, out_ch, 3, padding=dirate, dilation=dirate)
        self.bn_s1 = nn.BatchNorm2d(out_ch)
        self.relu_s1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu_s1(self.bn_s1(self.conv_s1(x)))


def _up_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=False)


class RSU(nn.Module):
    """RSU-L for L in 4..7 (`depth` = L): rebnconvin, rebnconv1..L (the last dilated 2,
    pools between the first L-1), rebnconv(L-1)d..1d. Named exactly as RSU7/6/5/4."""

    def __init__(self, depth: int, in_ch: int, mid_ch: int, out_ch: int):
        super().__init__()
        self.depth = depth
        self.rebnconvin = REBNCONV(in_ch, out_ch, 1)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch, 1)
        for i in range(2, depth):
            setattr(self, f"rebnconv{i}", REBNCONV(mid_ch, mid_ch, 1))
        setattr(self, f"rebnconv{depth}", REBNCONV(mid_ch, mid_ch, 2))
        for i in range(depth - 1, 1, -1):
            setattr(self, f"rebnconv{i}d", REBNCONV(mid_ch * 2, mid_ch, 1))
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        skips = [self.rebnconv1(hxin)]
        for i in range(2, self.depth):     # encoder: pool, conv (no pool before the dilated one)
            skips.append(getattr(self, f"rebnconv{i}")(F.max_pool2d(skips[-1], 2, 2, ceil_mode=True)))
        d = getattr(self, f"rebnconv{self.depth}")(skips[-1])
        for i in range(self.depth - 1, 0, -1):
            d = getattr(self, f"rebnconv{i}d")(torch.cat((d, skips[i - 1]), 1))
            if i > 1:
                d = _up_to(d, skips[i - 2])
        return d + hxin


class RSU4F(nn.Module):
    """RSU-4F: no pooling, dilations 1, 2, 4, 8 and back (the official RSU4F's names)."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int):
        super().__init__()
        self.rebnconvin = REBNCONV(in_ch, out_ch, 1)
        self.rebnconv1 = REBNCONV(out_ch, mid_ch, 1)
        self.rebnconv2 = REBNCONV(mid_ch, mid_ch, 2)
        self.rebnconv3 = REBNCONV(mid_ch, mid_ch, 4)
        self.rebnconv4 = REBNCONV(mid_ch, mid_ch, 8)
        self.rebnconv3d = REBNCONV(mid_ch * 2, mid_ch, 4)
        self.rebnconv2d = REBNCONV(mid_ch * 2, mid_ch, 2)
        self.rebnconv1d = REBNCONV(mid_ch * 2, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hxin = self.rebnconvin(x)
        hx1 = self.rebnconv1(hxin)
        hx2 = self.rebnconv2(hx1)
        hx3 = self.rebnconv3(hx2)
        hx4 = self.rebnconv4(hx3)
        hx3d = self.rebnconv3d(torch.cat((hx4, hx3), 1))
        hx2d = self.rebnconv2d(torch.cat((hx3d, hx2), 1))
        return self.rebnconv1d(torch.cat((hx2d, hx1), 1)) + hxin


def rsu(kind: str, in_ch: int, mid_ch: int, out_ch: int) -> nn.Module:
    return RSU4F(in_ch, mid_ch, out_ch) if kind == "4F" else RSU(int(kind), in_ch, mid_ch, out_ch)


class U2NetEncoder(nn.Module):
    """En_1..En_6 with MaxPool2d(2, ceil_mode=True) between stages; returns [U_1..U_6].
    Always frozen: `train()` keeps it in eval mode (BatchNorm statistics never move)."""

    def __init__(self, stages=OFFICIAL_ENCODER):
        super().__init__()
        for i, (kind, cin, mid, cout) in enumerate(stages, start=1):
            setattr(self, f"stage{i}", rsu(kind, cin, mid, cout))
        self.num_stages = len(stages)
        self.channels = tuple(s[3] for s in stages)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> U2NetEncoder:
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i in range(1, self.num_stages + 1):
            if out:
                x = F.max_pool2d(out[-1], 2, 2, ceil_mode=True)
            out.append(getattr(self, f"stage{i}")(x))
        return out


def full_model(variant: str = "u2net") -> nn.Module:
    """The official full U2NET(3, 1) / U2NETP(3, 1) module tree (encoder, decoder, side
    convs, outconv) with random weights: only its parameter layout; the decoder's
    forward is not needed here (training/pretrain_branches.py runs it)."""
    encoder, decoder, sides = LAYOUTS[variant]
    full = nn.Module()
    for i, (kind, cin, mid, cout) in enumerate(encoder, start=1):
        full.add_module(f"stage{i}", rsu(kind, cin, mid, cout))
    for name, kind, cin, mid, cout in decoder:
        full.add_module(name, rsu(kind, cin, mid, cout))
    for name, cin in sides:
        full.add_module(name, nn.Conv2d(cin, 1, 3, padding=1))
    full.add_module("outconv", nn.Conv2d(6, 1, 1))
    return full


def official_layout(variant: str = "u2net") -> dict[str, tuple[int, ...]]:
    """Key -> shape of the official full U2NET(3, 1) (or U2NETP) state dict (built on
    the meta device: no memory), `num_batches_tracked` included."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in full_model(variant).state_dict().items()}


def _is_encoder_key(key: str, stages: int) -> bool:
    return any(key.startswith(f"stage{i}.") for i in range(1, stages + 1))


def u2net_variant(state: Mapping[str, torch.Tensor]) -> str:
    """"u2netp" when the first stage is 16 channels wide inside (U2NETP), else "u2net"."""
    first = state.get("stage1.rebnconv1.conv_s1.weight")
    return "u2netp" if first is not None and first.shape[0] == 16 else "u2net"


def check_u2net_state(state: Mapping[str, torch.Tensor], path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict with any DataParallel `module.` prefix removed, if its keys and
    shapes are the official U2NET's or U2NETP's (`num_batches_tracked` may be absent, as
    in files saved by PyTorch 0.4.0); otherwise one CheckpointError naming the file."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    variant = u2net_variant(state)
    details = mismatch_details(official_layout(variant), state, against="official",
                               optional=lambda k: k.endswith("num_batches_tracked"))
    if details:
        raise CheckpointError(f"U²-Net file {path} is not the official {variant}.pth layout: "
                              + "; ".join(details))
    return dict(state)


def load_u2net_encoder(path: str | Path, state: Mapping[str, torch.Tensor] | None = None) -> U2NetEncoder:
    """The official encoder (U2NET or U2NETP, as the file is) with the file's weights
    (decoder keys checked, then dropped)."""
    from engines.files.checkpoints import load_state_dict
    if state is None:
        state = load_state_dict(path, expected=EXPECTED)
    state = check_u2net_state(state, path)
    encoder = U2NetEncoder(LAYOUTS[u2net_variant(state)][0])
    own = encoder.state_dict()
    mine = {k: v for k, v in state.items() if _is_encoder_key(k, encoder.num_stages)}
    for key in own:                       # absent counters (old files): keep the module's
        if key.endswith("num_batches_tracked") and key not in mine:
            mine[key] = own[key]
    encoder.load_state_dict(mine, strict=True)
    return encoder
