"""`sam`: Meta's Segment Anything (ViT-B/L/H) from the `segment_anything` package.

Mirrors `segment_anything.SamPredictor` step for step (same resize, coordinate transform,
normalisation, decoder call and upsampling) so masks equal the reference exactly; the
only difference on the default path is that candidates come back best first.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from engines.files.checkpoints import (checkpoint_identity, describe_checkpoint, load_into,
                                      load_state_dict)
from engines.runtime.device import choose_device, encoder_autocast
from engines.prompts import check_image, validate_prompt
from engines.hosts.detect import guess_sam_arch, tiny_sam_config
from engines.hosts.exact import disable_decoder_reuse, enable_decoder_reuse, memo_dense_pe
from engines.hosts.fast.decoder import disable_fast_decoder, enable_fast_decoder
from engines.hosts.geometry import sam_preprocess, sam_prompt_inputs
from engines.hosts.runtime_slot import encoder_slot
from engines.hosts.outputs import (as_tensor, best_first, default_multimask, fast_masks, to_prediction,
                                   upsample_logits)
from engines.types import CheckpointError, Embedding, Prediction, Prompt
from engines.hosts.fast.vit_attention import disable_fast_attention, enable_fast_attention

SAM_ARCHS = ("vit_b", "vit_l", "vit_h")


def build_sam_architecture(arch: str) -> Sam:
    """The official architecture with random weights (checkpoint loaded separately)."""
    from segment_anything import sam_model_registry
    if arch not in SAM_ARCHS:
        raise CheckpointError(f"unknown SAM architecture {arch!r}; choose one of {', '.join(SAM_ARCHS)}")
    return sam_model_registry[arch](checkpoint=None)


def build_sam_for_state(arch: str, state: dict) -> Sam:
    """The architecture `arch` names, randomly initialised; "tiny" reads its shape off `state`."""
    if arch == "tiny":
        from engines.hosts.tiny import tiny_sam
        config = tiny_sam_config(state)
        if config is None:
            raise CheckpointError("the checkpoint is not a tiny SAM (it has an official ViT width)")
        return tiny_sam(**config)
    return build_sam_architecture(arch)


class SamEngine:
    name = "sam"
    runtime_capable = True   # its encoder is one tensor in, one out: any runtime can run it

    def __init__(self, model: Sam, *, backbone_key: str, device: torch.device | str | None = None,
                 exact: bool = False, runtime: str | None = None):
        """`exact=True` runs the reference's modules and upsampling unchanged (bit-exact
        with SamPredictor); the default fuses the encoder's attention (fast/vit_attention.py),
        rearranges the decoder (fast/decoder.py) and upsamples with OpenCV
        (outputs.fast_masks): equal up to float rounding, tests bound it. `runtime`: the
        CPU encoder's runtime (engines/runtime: 'auto', 'torch-fp32', 'torch-bf16',
        'openvino-fp32', 'openvino-bf16'; default $ANNOTATOR_RUNTIME, else auto)."""
        self.device = choose_device(str(device) if device is not None else None)
        self.model = model.to(self.device).eval()
        self.checkpoint_key = backbone_key
        self.exact = exact
        self.transform = ResizeLongestSide(model.image_encoder.img_size)
        if exact:
            disable_fast_decoder(self.model.mask_decoder)      # the model may be shared
            disable_fast_attention(self.model.image_encoder)
            enable_decoder_reuse(self.model.prompt_encoder, self.model.mask_decoder.transformer)
        else:
            memo_dense_pe(self.model.prompt_encoder)
            disable_decoder_reuse(self.model.mask_decoder.transformer)
            enable_fast_decoder(self.model.mask_decoder)
            enable_fast_attention(self.model.image_encoder)
        self.encoder = self.build_encoder_slot(runtime) if self.runtime_capable else None

    def build_encoder_slot(self, runtime: str | None):
        """The image encoder behind a runtime slot (None off the CPU); subclasses whose
        encoder returns more than the embedding wrap it here."""
        return encoder_slot(self.model.image_encoder, self, self.input_side, runtime)

    @property
    def backbone_key(self) -> str:
        """The checkpoint's key, plus the runtime when its features are not torch fp32's."""
        return self.checkpoint_key + (self.encoder.key_suffix if self.encoder else "")

    @classmethod
    def from_checkpoint(cls, path: str | Path, arch: str | None = None, device=None,
                        exact: bool = False, runtime: str | None = None):
        """`arch`: vit_b / vit_l / vit_h / tiny, else read from the file (detect.guess_sam_arch)."""
        state = load_state_dict(path, expected=f"SAM {arch or 'ViT'}")
        arch = arch or guess_sam_arch(state)
        if arch is None:
            raise CheckpointError(f"checkpoint {path} is not a SAM checkpoint: it looks like "
                                  f"{describe_checkpoint(state)}")
        model = build_sam_for_state(arch, state)
        load_into(model, state, path, expected=f"SAM {arch}")
        return cls(model, backbone_key=f"sam:{arch}:{checkpoint_identity(path)}", device=device,
                   exact=exact, runtime=runtime)

    @property
    def input_side(self) -> int:
        return int(self.model.image_encoder.img_size)

    @torch.no_grad()
    def embed(self, image: np.ndarray) -> Embedding:
        image, resized, features = self.run_encoder(image)
        return Embedding(self.backbone_key, tuple(image.shape[:2]), tuple(resized.shape[:2]),
                         {"image_embed": features.float()})

    def run_encoder(self, image: np.ndarray):
        """(checked image, resized image, encoder output), as SamPredictor.set_image."""
        image = check_image(image)
        resized, x = sam_preprocess(self.model, self.transform, image, self.device)
        if self.encoder is not None:
            return image, resized, self.encoder(x)[0]
        with encoder_autocast(self.device):
            return image, resized, self.model.image_encoder(x)

    @torch.no_grad()
    def predict(self, emb: Embedding, prompt: Prompt) -> Prediction:
        prompt = validate_prompt(prompt, emb.image_size)
        low_res, scores = self.decode(emb, prompt, default_multimask(prompt))
        order = best_first(scores[0])
        if self.exact or self.device.type != "cpu":
            masks = (self.postprocess(low_res[:, order], emb) > self.model.mask_threshold)[0].cpu().numpy()
        else:
            masks = fast_masks(low_res[0, order].numpy(), emb.image_size, side=self.input_side,
                               input_size=emb.input_size, threshold=self.model.mask_threshold)
        return to_prediction(masks, scores, low_res, order, self.name)

    def encode_prompt(self, emb: Embedding, prompt: Prompt):
        """Prompt -> (sparse, dense) embeddings, with the reference's coordinate maths."""
        points, box = sam_prompt_inputs(
            None if prompt.points is None else self.transform.apply_coords(prompt.points, emb.image_size),
            prompt.labels,
            None if prompt.box is None else self.transform.apply_boxes(prompt.box, emb.image_size),
            self.device)
        masks = as_tensor(prompt.mask_logits, self.device)
        return self.model.prompt_encoder(points=points, boxes=box,
                                         masks=None if masks is None else masks[None])

    def decode(self, emb: Embedding, prompt: Prompt, multimask: bool):
        sparse, dense = self.encode_prompt(emb, prompt)
        return self.model.mask_decoder(
            image_embeddings=emb.features["image_embed"].to(self.device),
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
            multimask_output=multimask)

    def postprocess(self, low_res: torch.Tensor, emb: Embedding) -> torch.Tensor:
        """Low-res logits -> logits at the original size, exactly as Sam.postprocess_masks."""
        side = self.input_side
        up = upsample_logits(low_res, (side, side))[..., : emb.input_size[0], : emb.input_size[1]]
        return upsample_logits(up, emb.image_size)
