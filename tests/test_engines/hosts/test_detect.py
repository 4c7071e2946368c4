"""engines.hosts.detect: family, architecture and configuration from a state dict's keys
and shapes, on tiny real models and on official-shaped (zero-size-free) fakes."""
import subprocess
import sys

import pytest
import torch

from engines.hosts.detect import (Detected, describe, detect, guess_sam2_arch, guess_sam_arch,
                                  sam_config_from_state, tiny_sam_config)
from engines.hosts.tiny import tiny_sam, tiny_sam2


def _vit_shaped(width: int, depth: int, hq: bool = False) -> dict:
    """The keys sam_config_from_state reads, with official ViT shapes (tiny tensors via
    expand: no memory)."""
    z = torch.zeros(())
    grid, head_dim = 64, 64
    state = {"image_encoder.pos_embed": z.expand(1, grid, grid, width),
             "image_encoder.patch_embed.proj.weight": z.expand(width, 3, 16, 16),
             "image_encoder.blocks.0.mlp.lin1.weight": z.expand(4 * width, width),
             "image_encoder.neck.0.weight": z.expand(256, width, 1, 1),
             "prompt_encoder.mask_downscaling.3.weight": z.expand(16, 4, 2, 2),
             "mask_decoder.transformer.layers.0.mlp.lin1.weight": z.expand(2048, 256),
             "mask_decoder.iou_prediction_head.layers.0.weight": z.expand(256, 256),
             "mask_decoder.iou_prediction_head.layers.2.weight": z.expand(4, 256)}
    for i in range(depth):
        size = grid if i % 4 == 3 else 14
        state[f"image_encoder.blocks.{i}.attn.rel_pos_h"] = z.expand(2 * size - 1, head_dim)
    if hq:
        state["mask_decoder.hf_token.weight"] = z.expand(1, 256)
    return state


@pytest.mark.parametrize("width,depth,arch", [(768, 12, "vit_b"), (1024, 24, "vit_l"),
                                              (1280, 32, "vit_h")])
def test_official_vit_shapes(width, depth, arch):
    found = detect(_vit_shaped(width, depth))
    assert (found.family, found.arch) == ("sam", arch)
    assert found.config.embed_dim == width and found.config.depth == depth
    assert found.config.num_heads == width // 64 and found.config.decoder_heads == 8
    assert detect(_vit_shaped(width, depth, hq=True)).family == "hq-sam"
    assert guess_sam_arch(_vit_shaped(width, depth)) == arch


def test_official_width_other_depth_is_tiny_for_builders_but_named_by_width():
    state = _vit_shaped(768, 4)
    assert detect(state).arch == "tiny"           # HQ-SAM builds this shape as it is
    assert guess_sam_arch(state) == "vit_b"       # SamEngine: load_into names the misfit
    assert describe(state) == "SAM (vit_b)"


@pytest.mark.parametrize("patch_size", [16, 8])
def test_tiny_sam_round_trips_its_config(patch_size):
    kwargs = dict(img_size=128, embed_dim=32, depth=3, num_heads=2, prompt_dim=32,
                  decoder_mlp_dim=48, window_size=4, patch_size=patch_size)
    state = tiny_sam(**kwargs).state_dict()
    assert tiny_sam_config(state) == kwargs
    found = detect(state)
    assert found == Detected("sam", "tiny", sam_config_from_state(state))
    assert guess_sam_arch(state) == "tiny"


def test_sam2_tiny_and_official_hiera_shapes():
    state = tiny_sam2().state_dict()
    assert detect(state).family == "sam2" and detect(state).config is None
    assert describe(state).startswith("SAM 2 (")
    z = torch.zeros(())
    for (width, blocks), arch in {(96, 12): "hiera_t", (144, 48): "hiera_l"}.items():
        fake = {"image_encoder.trunk.patch_embed.proj.weight": z.expand(width, 3, 7, 7),
                **{f"image_encoder.trunk.blocks.{i}.norm1.weight": z for i in range(blocks)}}
        assert guess_sam2_arch(fake) == arch and detect(fake) == Detected("sam2", arch)
        fake["sam_mask_decoder.hf_token.weight"] = z
        assert detect(fake).family == "hq-sam2"
    assert describe({"image_encoder.trunk.patch_embed.proj.weight": z.expand(96, 3, 7, 7)}) \
        == "SAM 2 (hiera_t or hiera_s)"


def test_tinyvit_and_unknown():
    z = torch.zeros(())
    assert detect({"image_encoder.layers.0.x": z}) == Detected("sam", "vit_tiny")
    assert detect({"image_encoder.layers.0.x": z, "mask_decoder.hf_token.weight": z}).family == "hq-sam"
    assert detect({"foo": z}) == Detected("unknown")
    # ViT-like but unreadable (no rel_pos tables): family known, no arch, no config
    assert detect({"image_encoder.pos_embed": z.expand(1, 4, 4, 48)}) == Detected("sam")
    assert guess_sam_arch({"image_encoder.pos_embed": z.expand(1, 4, 4, 48)}) is None


def test_detect_imports_no_torch_and_no_segment_anything():
    code = ("import sys; from engines.hosts import detect; "
            "print(sorted(m for m in ('torch', 'segment_anything', 'sam2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_of_hosts_resolves():
    import engines.hosts as hosts
    for name in hosts.__all__:
        assert getattr(hosts, name) is not None, name
