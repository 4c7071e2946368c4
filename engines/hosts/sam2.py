"""`sam2`: Meta's SAM 2.1 (Hiera T/S/B+/L) image path from the `sam2` package.

Mirrors `sam2.sam2_image_predictor.SAM2ImagePredictor` (same transforms, feature
reshaping, prompt concatenation, decoder call and upsampling), with feature sizes taken
from the model's own `image_size` instead of the predictor's hard-coded 1024-px values.
SAM 2's object-score head is kept: its logit comes back in `Prediction.extras`
("object_score_logit", "object_present"); like the reference predictor, masks are not
blanked when it is negative, so callers decide.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engines.files.checkpoints import checkpoint_identity, describe_checkpoint, load_into, load_state_dict
from engines.runtime.device import choose_device, encoder_autocast
from engines.hosts.runtime_slot import Sam2FeatureMaps, encoder_slot
from engines.prompts import check_image, validate_prompt
from engines.hosts.detect import guess_sam2_arch
from engines.hosts.exact import disable_decoder_reuse, enable_decoder_reuse, memo_dense_pe
from engines.hosts.fast.decoder import disable_fast_decoder, enable_fast_decoder
from engines.hosts.geometry import sam2_feature_maps, sam2_prompt_points, sam2_scale_coords
from engines.hosts.outputs import best_first, default_multimask, fast_masks, to_prediction, upsample_logits
from engines.types import CheckpointError, Embedding, Prediction, Prompt

SAM2_CONFIGS = {
    "hiera_t": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "hiera_s": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "hiera_b+": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "hiera_l": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


def build_sam2_architecture(arch: str, overrides: list[str] | None = None):
    from sam2.build_sam import build_sam2
    if arch not in SAM2_CONFIGS:
        raise CheckpointError(f"unknown SAM 2 architecture {arch!r}; choose one of {', '.join(SAM2_CONFIGS)}")
    return build_sam2(SAM2_CONFIGS[arch], ckpt_path=None, device="cpu",
                      hydra_overrides_extra=overrides or []).eval()


TINY_SAM2 = "tiny"   # a SAM 2 state dict of no official size: engines.hosts.tiny.tiny_sam2's


def build_sam2_for_state(state, path: str | Path, arch: str | None = None, image_size: int = 256):
    """(arch, randomly initialised model) for a SAM 2 state dict: an official size read
    from the trunk, or `tiny` (tiny_sam2 at `image_size`, 256 px as `annotator train sam2
    --backbone scratch:tiny` saves it) for another SAM 2 shape; CheckpointError if not SAM 2."""
    from engines.hosts.detect import is_sam2_state
    arch = arch or guess_sam2_arch(state) or (TINY_SAM2 if is_sam2_state(state) else None)
    if arch is None:
        raise CheckpointError(f"checkpoint {path} is not a SAM 2.1 checkpoint: it looks like "
                              f"{describe_checkpoint(state)}")
    if arch != TINY_SAM2:
        return arch, build_sam2_architecture(arch)
    from engines.hosts.tiny import tiny_sam2
    with torch.random.fork_rng(devices=[]):   # tiny_sam2 seeds torch
        return arch, tiny_sam2(img_size=image_size)


class Sam2Engine:
    name = "sam2"

    runtime_capable = True

    def __init__(self, model, *, backbone_key: str, device: torch.device | str | None = None,
                 exact: bool = False, runtime: str | None = None):
        """`exact=True` runs the reference's decoder and upsampling unchanged (bit-exact
        with SAM2ImagePredictor); the default rearranges the decoder (fast/decoder.py)
        and upsamples with OpenCV (outputs.fast_masks): equal up to float rounding.
        `runtime`: the CPU encoder's runtime, as SamEngine's."""
        from sam2.utils.transforms import SAM2Transforms
        self.device = choose_device(str(device) if device is not None else None)
        self.model = model.to(self.device).eval()
        self.checkpoint_key = backbone_key
        self.exact = exact
        if exact:
            disable_fast_decoder(self.model.sam_mask_decoder)   # the model may be shared
            enable_decoder_reuse(self.model.sam_prompt_encoder, self.model.sam_mask_decoder.transformer)
        else:
            memo_dense_pe(self.model.sam_prompt_encoder)
            disable_decoder_reuse(self.model.sam_mask_decoder.transformer)
            enable_fast_decoder(self.model.sam_mask_decoder)
        self.transforms = SAM2Transforms(resolution=model.image_size, mask_threshold=0.0)
        self.encoder = encoder_slot(Sam2FeatureMaps(self.model), self, int(model.image_size), runtime) \
            if self.runtime_capable else None

    @property
    def backbone_key(self) -> str:
        return self.checkpoint_key + (self.encoder.key_suffix if self.encoder else "")

    @classmethod
    def from_checkpoint(cls, path: str | Path, arch: str | None = None, device=None,
                        exact: bool = False, image_size: int = 256, runtime: str | None = None):
        """`arch`: one of SAM2_CONFIGS, else read from the file (detect.guess_sam2_arch);
        "tiny" (a SAM 2 file of no official size) is engines.hosts.tiny.tiny_sam2's, built
        at `image_size` (a test-size SAM 2's state dict does not record it)."""
        state = load_state_dict(path, expected=f"SAM 2.1 {arch or 'Hiera'}")
        arch, model = build_sam2_for_state(state, path, arch, image_size=image_size)
        load_into(model, state, path, expected=f"SAM 2.1 {arch}")
        return cls(model, backbone_key=f"sam2:{arch}:{checkpoint_identity(path)}", device=device,
                   exact=exact, runtime=runtime)

    @property
    def input_side(self) -> int:
        return int(self.model.image_size)

    @torch.no_grad()
    def embed(self, image: np.ndarray) -> Embedding:
        image = check_image(image)
        x = self.transforms(image)[None].to(self.device)
        if self.encoder is not None:
            maps = dict(zip(Sam2FeatureMaps.NAMES, self.encoder(x)))
        else:
            maps = sam2_feature_maps(self.model, x, autocast=encoder_autocast(self.device))
        feats = {k: v.float() for k, v in maps.items()}
        side = self.input_side
        return Embedding(self.backbone_key, tuple(image.shape[:2]), (side, side), feats)

    @torch.no_grad()
    def predict(self, emb: Embedding, prompt: Prompt) -> Prediction:
        prompt = validate_prompt(prompt, emb.image_size)
        return self._prediction(emb, *self.decode(emb, prompt, default_multimask(prompt)))

    @torch.no_grad()
    def predict_unprompted(self, emb: Embedding, *, multimask: bool = False) -> Prediction:
        """SAM 2 with a null prompt: no points, no box, no mask, i.e. the prompt encoder's
        empty sparse embeddings and its no-mask dense embedding (what
        `SAM2ImagePredictor.predict()` does with no prompt; IP-SAM's "null" baseline).
        `predict` refuses an empty prompt, as a click tool should; this is the explicit door."""
        sparse, dense = self.model.sam_prompt_encoder(points=None, boxes=None, masks=None)
        return self._prediction(emb, *self._decode_embeddings(emb, sparse, dense, multimask))

    def _prediction(self, emb: Embedding, low_res: torch.Tensor, scores: torch.Tensor,
                    object_logit: torch.Tensor) -> Prediction:
        order = best_first(scores[0])
        # masks come from the raw logits; the clamped ones are returned for feeding back,
        # both as the reference does
        if self.exact or self.device.type != "cpu":
            masks = (self.postprocess(low_res[:, order], emb) > 0.0)[0].cpu().numpy()
        else:
            masks = fast_masks(low_res[0, order].float().numpy(), emb.image_size)
        low_res = torch.clamp(low_res, -32.0, 32.0)
        logit = float(object_logit.reshape(-1)[0])
        return to_prediction(masks, scores, low_res, order, self.name,
                             object_score_logit=logit, object_present=logit > 0)

    def encode_prompt(self, emb: Embedding, prompt: Prompt):
        """Box corners (labels 2, 3) first, then clicks, as SAM2ImagePredictor does."""
        points = sam2_prompt_points(prompt.points, prompt.labels, prompt.box, self.device)
        if points is not None:
            points = (sam2_scale_coords(points[0], emb.image_size, self.input_side), points[1])
        masks = None
        if prompt.mask_logits is not None:
            masks = torch.as_tensor(prompt.mask_logits, dtype=torch.float, device=self.device)[None]
        return self.model.sam_prompt_encoder(points=points, boxes=None, masks=masks)

    def decode(self, emb: Embedding, prompt: Prompt, multimask: bool):
        sparse, dense = self.encode_prompt(emb, prompt)
        return self._decode_embeddings(emb, sparse, dense, multimask)

    def _decode_embeddings(self, emb: Embedding, sparse: torch.Tensor, dense: torch.Tensor,
                           multimask: bool):
        f = {k: v.to(self.device) for k, v in emb.features.items()}
        low_res, scores, _, object_logit = self.model.sam_mask_decoder(
            image_embeddings=f["image_embed"], image_pe=self.model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=multimask, repeat_image=False,
            high_res_features=[f["high_res_0"], f["high_res_1"]])
        return low_res, scores, object_logit

    def postprocess(self, low_res: torch.Tensor, emb: Embedding) -> torch.Tensor:
        return upsample_logits(low_res.float(), emb.image_size)
