"""Tiny configurations of the real SAM / SAM 2 classes (small widths and depths, random
weights) so tests exercise the real code paths in milliseconds. Never downloads."""
from __future__ import annotations

from functools import partial

import torch


def tiny_sam(img_size: int = 256, embed_dim: int = 64, depth: int = 2, num_heads: int = 2,
             prompt_dim: int = 32, seed: int = 0, decoder_mlp_dim: int = 64,
             window_size: int = 4, patch_size: int = 16):
    """A `segment_anything.modeling.Sam` with the ViT-B layout shrunk; low-res logits are
    (4 * img_size / patch_size)^2: patch_size 8 gives a finer token and mask grid."""
    from segment_anything.modeling import (ImageEncoderViT, MaskDecoder, PromptEncoder, Sam,
                                           TwoWayTransformer)
    torch.manual_seed(seed)
    patch = patch_size
    emb = img_size // patch
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size, patch_size=patch, embed_dim=embed_dim, depth=depth,
            num_heads=num_heads, mlp_ratio=2, out_chans=prompt_dim, qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_rel_pos=True,
            window_size=window_size, global_attn_indexes=(depth - 1,)),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim, image_embedding_size=(emb, emb),
            input_image_size=(img_size, img_size), mask_in_chans=4),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim,
                                          mlp_dim=decoder_mlp_dim, num_heads=2),
            transformer_dim=prompt_dim, iou_head_depth=1, iou_head_hidden_dim=32),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375]).eval()


def tiny_sam2_overrides(img_size: int = 256, embed_dim: int = 16, d_model: int = 32,
                        mem_dim: int = 16) -> list[str]:
    """Hydra overrides that shrink `sam2.1_hiera_t.yaml` (a global-attention block must
    not be the first block of a stage: hieradet divides by zero otherwise)."""
    chans = [embed_dim * 8, embed_dim * 4, embed_dim * 2, embed_dim]
    feat = img_size // 16
    m, ma, me = "++model.", "++model.memory_attention.", "++model.memory_encoder."
    return [
        f"{m}image_size={img_size}",
        f"{m}image_encoder.trunk.embed_dim={embed_dim}", f"{m}image_encoder.trunk.num_heads=1",
        f"{m}image_encoder.trunk.stages=[1,1,2,1]",
        f"{m}image_encoder.trunk.global_att_blocks=[3]",
        f"{m}image_encoder.trunk.window_spec=[4,4,4,4]",
        f"{m}image_encoder.trunk.window_pos_embed_bkg_spatial_size=[4,4]",
        f"{m}image_encoder.neck.d_model={d_model}",
        f"{m}image_encoder.neck.position_encoding.num_pos_feats={d_model}",
        f"{m}image_encoder.neck.backbone_channel_list=[{','.join(map(str, chans))}]",
        f"{ma}d_model={d_model}", f"{ma}num_layers=1", f"{ma}layer.d_model={d_model}",
        f"{ma}layer.dim_feedforward=32",
        f"{ma}layer.self_attention.embedding_dim={d_model}",
        f"{ma}layer.self_attention.feat_sizes=[{feat},{feat}]",
        f"{ma}layer.cross_attention.embedding_dim={d_model}",
        f"{ma}layer.cross_attention.feat_sizes=[{feat},{feat}]",
        f"{ma}layer.cross_attention.kv_in_dim={mem_dim}",
        f"{me}out_dim={mem_dim}", f"{me}in_dim={d_model}",
        f"{me}position_encoding.num_pos_feats={mem_dim}",
        f"{me}mask_downsampler.embed_dim={d_model}", f"{me}fuser.layer.dim={d_model}",
        f"{me}fuser.num_layers=1",
    ]


def tiny_sam2(img_size: int = 256, seed: int = 0):
    """A `sam2.modeling.sam2_base.SAM2Base` from the real 2.1 Hiera-T config, shrunk."""
    from sam2.build_sam import build_sam2
    torch.manual_seed(seed)
    return build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu",
                      hydra_overrides_extra=tiny_sam2_overrides(img_size)).eval()
