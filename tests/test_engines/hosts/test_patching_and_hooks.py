"""The hosts' one patching idiom, the declared per-layer hook protocol, and decoder
reuse with its inverse."""
import copy

import pytest
import torch

from engines.hosts.exact import DECODER_REUSE, disable_decoder_reuse, enable_decoder_reuse
from engines.hosts.fast import (LayerHook, MixKeysHook, add_layer_hook, disable_fast_decoder,
                                enable_fast_decoder, installed, is_patched, layer_hook, patch,
                                reference, remove_layer_hook, unpatch)
from engines.hosts.fast.decoder import FAST_DECODER


def _twice(self, x):
    return 2 * reference(self, "twice")(x)


def test_patch_is_idempotent_and_unpatch_its_inverse():
    lin = torch.nn.Linear(3, 3)
    x = torch.randn(2, 3)
    plain = lin(x)
    assert patch(lin, "forward", _twice, "twice") and not patch(lin, "forward", _twice, "twice")
    assert is_patched(lin, "twice") and torch.allclose(lin(x), 2 * plain)
    assert unpatch(lin, "twice") and not unpatch(lin, "twice")
    assert not is_patched(lin, "twice") and "forward" not in vars(lin) and torch.equal(lin(x), plain)
    assert set(vars(lin)) == set(vars(torch.nn.Linear(3, 3)))   # no registry left behind


def test_stacked_patches_come_off_in_reverse_order_and_survive_deepcopy():
    lin = torch.nn.Linear(3, 3)
    x = torch.randn(2, 3)
    patch(lin, "forward", _twice, "twice")
    patch(lin, "forward", lambda self, x: reference(self, "plus")(x) + 1, "plus")
    clone = copy.deepcopy(lin)
    assert torch.allclose(clone(x), lin(x))
    with pytest.raises(RuntimeError, match="unpatch that one first"):
        unpatch(lin, "twice")
    for module in (lin, clone):
        assert unpatch(module, "plus") and unpatch(module, "twice")
        assert "forward" not in vars(module)
    assert torch.equal(clone(x), torch.nn.functional.linear(x, clone.weight, clone.bias))


def test_fast_decoder_and_reuse_enable_disable(tiny_sam_model):
    model = copy.deepcopy(tiny_sam_model)
    decoder, transformer = model.mask_decoder, model.mask_decoder.transformer
    enable_fast_decoder(decoder)
    enable_fast_decoder(decoder)
    assert is_patched(transformer, FAST_DECODER) and is_patched(decoder, FAST_DECODER)
    disable_fast_decoder(decoder)
    assert not any("_annotator_patches" in vars(m) for m in decoder.modules())

    enable_decoder_reuse(model.prompt_encoder, transformer)
    enable_decoder_reuse(model.prompt_encoder, transformer)
    first = transformer.layers[0]
    projections = (first.cross_attn_token_to_image.k_proj, first.cross_attn_token_to_image.v_proj,
                   first.cross_attn_image_to_token.q_proj)
    assert all(is_patched(p, DECODER_REUSE) for p in projections)
    x = torch.randn(1, 5, projections[0].in_features)
    with torch.no_grad():
        assert projections[0](x) is projections[0](x.clone())          # the memo answers
    disable_decoder_reuse(transformer)
    assert not any(is_patched(p, DECODER_REUSE) or "forward" in vars(p) for p in projections)
    with torch.no_grad():
        assert projections[0](x) is not projections[0](x)


class _ScaleKeys(MixKeysHook):
    """A dummy plugin: layer `layer_index`'s token->image attention reads keys * factor."""

    def __init__(self, transformer, layer_index, factor):
        self.layer_index, self.block, self.factor = layer_index, transformer.layers[layer_index], factor
        self.calls = []

    def mix_keys(self, layer_index, queries, keys):
        self.calls.append(layer_index)
        return keys * self.factor


def _decode(model, inputs):
    return model.mask_decoder(*inputs, multimask_output=True)[0]


def _inputs(model):
    g = torch.Generator().manual_seed(0)
    C = model.prompt_encoder.embed_dim
    hw = model.prompt_encoder.image_embedding_size
    return (torch.randn(1, C, *hw, generator=g), model.prompt_encoder.get_dense_pe(),
            torch.randn(1, 3, C, generator=g), torch.randn(1, C, *hw, generator=g))


@pytest.mark.parametrize("layer_index", [0, 1])
def test_layer_hook_protocol_on_reference_and_fast_transformers(tiny_sam_model, layer_index):
    model = copy.deepcopy(tiny_sam_model)
    transformer = model.mask_decoder.transformer
    inputs = _inputs(model)
    with torch.no_grad():
        plain = _decode(model, inputs)
        identity = _ScaleKeys(transformer, layer_index, 1.0)
        assert isinstance(identity, LayerHook)
        add_layer_hook(transformer, identity)
        assert layer_hook(transformer.layers[layer_index]) is identity
        assert torch.equal(_decode(model, inputs), plain)     # the one block rewrite is exact
        scaled = _ScaleKeys(transformer, layer_index, 0.5)
        add_layer_hook(transformer, scaled)                   # replaces the previous hook
        reference_out = _decode(model, inputs)
        enable_fast_decoder(model.mask_decoder)
        fast_out = _decode(model, inputs)
        assert scaled.calls == [layer_index, layer_index] and not identity.calls[1:]
        assert remove_layer_hook(transformer, layer_index) is scaled
        assert installed(transformer.layers[layer_index], "layer-hook") is None
        back = _decode(model, inputs)
    assert not torch.allclose(reference_out, plain, atol=1e-3), "the hook must matter"
    torch.testing.assert_close(fast_out, reference_out, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(back, plain, atol=1e-4, rtol=1e-4)
