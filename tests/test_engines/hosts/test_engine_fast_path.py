"""The default (fast) engines against the exact ones (the reference's own modules) on the
same weights: the encoder's fused attention (engines/hosts/fast/vit_attention.py), the rearranged decoder
(engines/hosts/fast/decoder.py) and OpenCV's upsampling agree to float rounding. Bounds: logits
and scores within 1e-5 of the largest logit, feature maps within 1e-5 of their largest
value, at most 0.1 % of a mask's pixels differ and only on its boundary. Caches follow
the mask input, the image and the weights. With autograd on (training) the decoder's
rearranged forward runs too and gives the reference's gradients; the encoder does not."""
import copy

import numpy as np
import pytest
import torch

from engines.hosts.fast.decoder import enable_fast_upscaling
from engines.hosts.sam2 import Sam2Engine
from engines.hosts.sam import SamEngine
from engines.stable_sam.plugin import StableSAMPlugin
from engines.stable_sam.engine import StableSamEngine
from engines.types import Prompt
from engines.hosts.fast.vit_attention import enable_fast_attention


def boundary(mask):
    """Pixels whose 3x3 neighbourhood holds both classes."""
    p = np.pad(mask, 1, mode="edge")
    h, w = mask.shape
    shifts = [p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    stack = np.stack(shifts)
    return stack.any(0) & ~stack.all(0)


def assert_close(a, b, counts=None):
    """Prediction a (fast) against b (exact)."""
    scale = float(np.abs(b.low_res_logits).max())
    np.testing.assert_allclose(a.low_res_logits, b.low_res_logits, rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(a.scores, b.scores, rtol=0, atol=1e-5)
    assert a.masks.shape == b.masks.shape
    for ma, mb in zip(a.masks, b.masks):
        diff = ma != mb
        assert not (diff & ~boundary(mb)).any(), "a differing pixel lies off the mask's boundary"
        if counts is not None:
            counts[0] += int(diff.sum())
            counts[1] += max(int(mb.sum()), 1)


@pytest.fixture(scope="module", params=["sam", "sam2"])
def engines_pair(request, tiny_sam_model, tiny_sam2_model):
    cls, model = (SamEngine, tiny_sam_model) if request.param == "sam" else (Sam2Engine, tiny_sam2_model)
    fast = cls(copy.deepcopy(model), backbone_key="t", device="cpu")
    exact = cls(copy.deepcopy(model), backbone_key="t", device="cpu", exact=True)
    return fast, exact


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _sam_pair(model):
    """(fast, exact) SamEngine on separate copies of the same weights."""
    return (SamEngine(copy.deepcopy(model), backbone_key="t", device="cpu"),
            SamEngine(copy.deepcopy(model), backbone_key="t", device="cpu", exact=True))


# (192, 256): the long side equals the tiny SAM's input side, so the second resize is skipped
@pytest.mark.parametrize("shape", [(333, 517), (480, 640), (1000, 300), (192, 256)])
def test_fast_masks_within_bound_of_exact(engines_pair, shape):
    fast, exact = engines_pair
    h, w = shape
    rng = np.random.default_rng(h + w)
    emb = exact.embed(_image(h, w, h + w))
    counts = [0, 0]
    for _ in range(4):
        pt = rng.uniform([0, 0], [w, h], size=(1, 2))
        box = np.array([w * .2, h * .2, w * .7, h * .8])
        many = rng.uniform([0, 0], [w, h], size=(12, 2))   # past the re-association's break-even
        for prompt in (Prompt(points=pt), Prompt(box=box, points=pt), Prompt(box=box),
                       Prompt(points=np.vstack([pt, pt * 0.5]), labels=np.array([1, 0])),
                       Prompt(points=many, labels=np.arange(12) % 2)):
            assert_close(fast.predict(emb, prompt), exact.predict(emb, prompt), counts)
    assert counts[0] <= 0.001 * counts[1]


def test_fast_encoder_within_bound_of_exact(engines_pair):
    fast, exact = engines_pair
    img = _image(200, 300, 5)
    a, b = fast.embed(img), exact.embed(img)
    for name, value in b.features.items():
        scale = float(value.abs().max())
        torch.testing.assert_close(a.features[name], value, rtol=0, atol=1e-5 * scale)


def test_fast_decoder_follows_mask_input_and_image(engines_pair):
    fast, exact = engines_pair
    img = _image(120, 160, 1)
    emb = exact.embed(img)
    p1 = Prompt(points=np.array([[40.0, 50.0]]))
    first = fast.predict(emb, p1)
    fed = Prompt(points=np.array([[40.0, 50.0]]), mask_logits=first.low_res_logits[:1], multimask=False)
    again = Prompt(points=np.array([[40.0, 50.0]]), multimask=False)
    for prompt in (fed, again, fed, p1):
        assert_close(fast.predict(emb, prompt), exact.predict(emb, prompt))
    # a second image: nothing from the first leaks; then back to the first
    emb2 = exact.embed(img[::-1].copy())
    assert_close(fast.predict(emb2, p1), exact.predict(emb2, p1))
    assert_close(fast.predict(emb, p1), exact.predict(emb, p1))


def test_fast_decoder_follows_new_weights(tiny_sam_model):
    fast, exact = _sam_pair(tiny_sam_model)
    emb = exact.embed(_image(96, 128, 2))
    prompt = Prompt(points=np.array([[30.0, 40.0]]))
    assert_close(fast.predict(emb, prompt), exact.predict(emb, prompt))
    # in-place updates (load_state_dict, an optimiser step) must reach the cached pieces
    with torch.no_grad():
        for engine in (fast, exact):
            d = engine.model.mask_decoder
            d.transformer.layers[0].cross_attn_token_to_image.k_proj.weight.mul_(1.5)
            d.transformer.layers[0].cross_attn_image_to_token.q_proj.bias.add_(0.3)
            d.output_upscaling[0].weight.mul_(-1.0)
    assert_close(fast.predict(emb, prompt), exact.predict(emb, prompt))


@pytest.mark.parametrize("bias", [True, False])
def test_transposed_conv_and_layer_norm_as_matmul(bias):
    from segment_anything.modeling.common import LayerNorm2d
    torch.manual_seed(0)
    up = torch.nn.Sequential(torch.nn.ConvTranspose2d(24, 12, 2, stride=2, bias=bias), LayerNorm2d(12),
                             torch.nn.GELU(), torch.nn.ConvTranspose2d(12, 5, 2, stride=2, bias=bias))
    torch.nn.init.normal_(up[1].weight)
    torch.nn.init.normal_(up[1].bias)
    ref = copy.deepcopy(up)
    enable_fast_upscaling(up)
    x = torch.randn(2, 24, 7, 9)
    with torch.no_grad():
        out, expected = up(x), ref(x)
        assert out.shape == expected.shape == (2, 5, 28, 36)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
        # the decoders flatten the output with .view(b, c, h * w)
        torch.testing.assert_close(out.view(2, 5, -1), expected.view(2, 5, -1), rtol=0, atol=1e-5)


def test_fused_vit_attention_with_relative_positions(tiny_sam_model):
    encoder = copy.deepcopy(tiny_sam_model.image_encoder)
    torch.manual_seed(3)
    for block in encoder.blocks:     # the tiny model's rel-pos tables start at zero
        torch.nn.init.normal_(block.attn.rel_pos_h, std=0.5)
        torch.nn.init.normal_(block.attn.rel_pos_w, std=0.5)
    ref = copy.deepcopy(encoder)
    enable_fast_attention(encoder)
    enable_fast_attention(encoder)   # idempotent
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        out, expected = encoder(x), ref(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))


@pytest.mark.parametrize("host_cls", ["sam", "sam2"])
def test_stable_sam_on_the_fast_host(host_cls, tiny_sam_model, tiny_sam2_model):
    cls, model = (SamEngine, tiny_sam_model) if host_cls == "sam" else (Sam2Engine, tiny_sam2_model)
    decoder = model.sam_mask_decoder if host_cls == "sam2" else model.mask_decoder
    torch.manual_seed(7)
    plugin = StableSAMPlugin(int(decoder.transformer_dim))
    with torch.no_grad():               # away from the identity start: real offsets and mixing
        for p in plugin.parameters():
            p.add_(0.05 * torch.randn_like(p))
    fast = StableSamEngine(cls(copy.deepcopy(model), backbone_key="t", device="cpu"), copy.deepcopy(plugin))
    exact = StableSamEngine(cls(copy.deepcopy(model), backbone_key="t", device="cpu", exact=True), plugin)
    emb = exact.embed(_image(150, 200, 4))
    for prompt in (Prompt(points=np.array([[60.0, 70.0]])), Prompt(box=np.array([20, 30, 150, 120]))):
        a, b = fast.predict(emb, prompt), exact.predict(emb, prompt)
        assert_close(a, b)
        np.testing.assert_allclose(a.extras["alpha"], b.extras["alpha"], rtol=0, atol=1e-6)


def test_an_exact_engine_on_a_shared_model_runs_the_reference(tiny_sam_model):
    model = copy.deepcopy(tiny_sam_model)
    SamEngine(model, backbone_key="t", device="cpu")             # patches the model
    exact = SamEngine(model, backbone_key="t", device="cpu", exact=True)
    decoder = exact.model.mask_decoder
    for module in (decoder, decoder.transformer, *decoder.output_upscaling,
                   *(b.attn for b in exact.model.image_encoder.blocks)):
        assert "forward" not in vars(module) and "predict_masks" not in vars(module)


def _decoder_args(model, seed=0, points=2):
    torch.manual_seed(seed)
    side = model.prompt_encoder.image_embedding_size
    emb = torch.randn(1, model.prompt_encoder.embed_dim, *side)
    xy = torch.rand(1, points, 2) * 200
    labels = torch.arange(points)[None] % 2
    sparse, dense = model.prompt_encoder(points=(xy, labels), boxes=None, masks=None)
    return dict(image_embeddings=emb, image_pe=model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse.detach(), dense_prompt_embeddings=dense.detach(),
                multimask_output=True)


# 2 points: the re-associated attention; 12: so many tokens that it takes the projections
@pytest.mark.parametrize("points", [2, 12])
def test_training_through_the_fast_decoder_gives_the_reference_gradients(tiny_sam_model, points):
    """With autograd on, the rearranged decoder runs too (training steps are mostly
    decoder): outputs and every decoder parameter's gradient agree with the reference."""
    fast = copy.deepcopy(tiny_sam_model)
    SamEngine(fast, backbone_key="t", device="cpu")          # installs the fast paths
    ref = copy.deepcopy(tiny_sam_model)
    for model in (fast, ref):
        model.mask_decoder.requires_grad_(True)
    outputs = []
    for model in (fast, ref):
        with torch.enable_grad():
            masks, iou = model.mask_decoder(**_decoder_args(model, points=points))
            (masks.square().mean() + iou.sum()).backward()
        outputs.append((masks.detach(), iou.detach()))
    for a, b in zip(*outputs):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * float(b.abs().max()))
    grads = {n: p.grad for n, p in ref.mask_decoder.named_parameters()}
    largest = max(float(g.abs().max()) for g in grads.values() if g is not None)
    for name, p in fast.mask_decoder.named_parameters():
        assert (p.grad is None) == (grads[name] is None), name
        if p.grad is not None:
            # floor: some gradients are zero in exact maths (an attention key's bias), so
            # both sides hold only rounding noise there
            scale = max(float(grads[name].abs().max()), 1e-3 * largest)
            torch.testing.assert_close(p.grad, grads[name], rtol=0, atol=1e-4 * scale, msg=name)
    # the encoder keeps the reference attention under autograd (it is frozen in training)
    x = torch.randn(1, 3, 256, 256)
    with torch.enable_grad():
        torch.testing.assert_close(fast.image_encoder(x), ref.image_encoder(x), rtol=0, atol=0)


def test_hq_sam2_fast_engine_within_bound_of_exact(tiny_sam2_model):
    from engines.hq_sam.sam2 import HqSam2Decoder, HqSam2Engine
    models = [copy.deepcopy(tiny_sam2_model) for _ in range(2)]
    torch.manual_seed(5)
    hq = HqSam2Decoder(models[0].sam_mask_decoder)
    with torch.no_grad():                 # a non-zero HQ kernel: the HQ path matters
        for p in hq.parameters():
            p.add_(0.1 * torch.randn_like(p))
    fast = HqSam2Engine(models[0], hq, backbone_key="t", device="cpu")
    exact = HqSam2Engine(models[1], copy.deepcopy(hq), backbone_key="t", device="cpu", exact=True)
    emb = exact.embed(_image(140, 210, 6))
    for prompt in (Prompt(points=np.array([[50.0, 60.0]])), Prompt(box=np.array([20, 30, 180, 120]))):
        assert_close(fast.predict(emb, prompt), exact.predict(emb, prompt))


def test_first_layer_cache_sees_a_positional_encoding_changed_in_place(tiny_sam_model):
    fast, exact = _sam_pair(tiny_sam_model)
    emb = exact.embed(_image(96, 128, 8))
    prompt = Prompt(points=np.array([[30.0, 40.0]]))
    fast.predict(emb, prompt)
    with torch.no_grad():       # the memoised dense PE tensor itself, changed in place
        for engine in (fast, exact):
            engine.model.prompt_encoder.get_dense_pe().mul_(0.5)
    assert_close(fast.predict(emb, prompt), exact.predict(emb, prompt))
