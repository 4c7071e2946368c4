"""Stable-SAM's plugin (DSP + DRP), its patch of decoder layer 2 on the SAM, HQ-SAM and
SAM 2 decoders, and the training adapter (specs/stable_sam.md §2, §7)."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engines.stable_sam.plugin import StableSAMPlugin, attach, attached, detach, output_token_index
from engines.types import EngineError

C = 32   # the tiny models' decoder width


def tiny_decoder_inputs(model, seed=0, n_prompts=1, sam2=False):
    """Image embedding, dense PE, and box prompt embeddings for a tiny SAM / SAM 2."""
    g = torch.Generator().manual_seed(seed)
    pe_enc = model.sam_prompt_encoder if sam2 else model.prompt_encoder
    side = pe_enc.image_embedding_size[0]
    emb = torch.randn(1 if not sam2 else n_prompts, C, side, side, generator=g)
    boxes = torch.tensor([[20., 30., 180., 200.], [100., 10., 250., 120.]])[:n_prompts]
    with torch.no_grad():
        if sam2:
            pts = boxes.view(-1, 2, 2)
            sparse, dense = pe_enc(points=(pts, torch.tensor([[2, 3]] * n_prompts)), boxes=None, masks=None)
        else:
            sparse, dense = pe_enc(points=None, boxes=boxes, masks=None)
    return emb, pe_enc.get_dense_pe(), sparse, dense


def scramble(plugin, seed=1, offset_gain=3.0):
    """Move the plugin far from identity: random amplitude map, non-zero offsets."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in plugin.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
        plugin.conv_out.weight.mul_(offset_gain * 10)
    return plugin


def norm1_outputs(block):
    """Record the block's queries after self-attention (what DRP reads)."""
    seen = []
    block.norm1.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    return seen


def sample(x, off, path):
    """The plugin's bilinear sampling: "sparse" (inference) or "gather" (autograd) path."""
    if path == "gather":
        return StableSAMPlugin.sample(x.clone().requires_grad_(), off).detach()
    with torch.no_grad():
        return StableSAMPlugin.sample(x, off)


PATHS = pytest.mark.parametrize("path", ["sparse", "gather"])


# --- the plugin ---------------------------------------------------------------------------
def test_parameter_count_and_identity_init():
    plugin = StableSAMPlugin(256, s_p=4.0, drp_hidden=32)
    assert sum(p.numel() for p in plugin.parameters()) == 81_829
    assert torch.equal(plugin.conv_in.weight.view(256, 256), torch.eye(256))
    assert not plugin.conv_in.bias.any() and not plugin.conv_out.weight.any() and not plugin.conv_out.bias.any()
    assert plugin.s.item() == 1.0 and plugin.s_p.item() == 4.0
    assert "s_p" in plugin.state_dict()      # the scale travels with the weights


def test_shapes_offsets_bounded_and_alpha_sums_to_s():
    torch.manual_seed(0)
    plugin = scramble(StableSAMPlugin(C, s_p=2.5))
    with torch.no_grad():
        plugin.s.fill_(1.7)
        x = torch.randn(3, 12 * 10, C)
        x_star = plugin.amplitude(x)
        off = plugin.offsets(x_star, (12, 10))
        assert off.shape == (3, 2, 12, 10)
        assert off.abs().max() <= 2.5 and off.abs().max() > 1.0
        token = torch.randn(3, C)
        alpha = plugin.route(token)
        mixed, _ = plugin.mix(x, plugin.routing(token), (12, 10))
        x_def = plugin.sample(x_star, off)
        torch.testing.assert_close(mixed, alpha[:, :1, None] * x_def + alpha[:, 1:, None] * x)
    assert alpha.shape == (3, 2) and mixed.shape == x.shape
    torch.testing.assert_close(alpha.sum(-1), torch.full((3,), 1.7))
    assert (alpha > 0).all()


@PATHS
def test_zero_offsets_and_identity_amplitude_reproduce_the_map_exactly(path):
    plugin = StableSAMPlugin(C)
    x = torch.randn(2, 16 * 16, C)
    with torch.no_grad():
        x_star = plugin.amplitude(x)
        offsets = plugin.offsets(x_star, (16, 16))
    assert torch.equal(x_star, x) and not offsets.any()
    assert torch.equal(sample(x_star, offsets, path), x)


@PATHS
def test_dx_plus_one_shifts_one_column_and_the_last_column_repeats(path):
    H, W = 6, 7
    x = torch.randn(1, H * W, 5)
    off = torch.zeros(1, 2, H, W)
    off[:, 1] = 1.0
    out = sample(x, off, path).view(1, H, W, 5)
    grid = x.view(1, H, W, 5)
    assert torch.equal(out[:, :, :-1], grid[:, :, 1:])
    assert torch.equal(out[:, :, -1], grid[:, :, -1])


@PATHS
def test_huge_offsets_are_clamped_to_the_border(path):
    H, W = 5, 6
    x = torch.randn(2, H * W, 3)
    grid = x.view(2, H, W, 3)
    off = torch.full((2, 2, H, W), 1e4)
    off[1] = -1e4
    out = sample(x, off, path).view(2, H, W, 3)
    assert torch.equal(out[0], grid[0, -1, -1].expand(H, W, 3))
    assert torch.equal(out[1], grid[1, 0, 0].expand(H, W, 3))
    # through the offset network too: s_p * tanh saturates, the clamp keeps it on the map
    plugin = StableSAMPlugin(3, s_p=1e4)
    with torch.no_grad():
        plugin.conv_out.bias.fill_(50.0)
        deformed = plugin.sample(plugin.amplitude(x), plugin.offsets(plugin.amplitude(x), (H, W)))
    assert torch.equal(deformed.view(2, H, W, 3)[0], grid[0, -1, -1].expand(H, W, 3))


@PATHS
def test_fractional_offsets_match_grid_sample_and_manual_bilinear(path):
    g = torch.Generator().manual_seed(3)
    B, H, W, Cx = 2, 9, 11, 4
    x = torch.randn(B, H * W, Cx, generator=g)
    off = (torch.rand(B, 2, H, W, generator=g) - 0.5) * 7
    ours = sample(x, off, path)
    # the spec's formulation: clamp, normalise to [-1, 1], grid_sample(align_corners=True)
    ys, xs = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    py = (ys + off[:, 0]).clamp(0, H - 1)
    px = (xs + off[:, 1]).clamp(0, W - 1)
    grid = torch.stack([2 * px / (W - 1) - 1, 2 * py / (H - 1) - 1], -1)
    image = x.view(B, H, W, Cx).permute(0, 3, 1, 2)
    ref = F.grid_sample(image, grid, mode="bilinear", align_corners=True).flatten(2).transpose(1, 2)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    # and by hand at one location
    b, i, j = 1, 4, 6
    y, xx = float(py[b, i, j]), float(px[b, i, j])
    y0, x0 = int(np.floor(y)), int(np.floor(xx))
    y1, x1 = min(y0 + 1, H - 1), min(x0 + 1, W - 1)
    fy, fx = y - y0, xx - x0
    v = image[b]
    manual = ((1 - fy) * (1 - fx) * v[:, y0, x0] + (1 - fy) * fx * v[:, y0, x1]
              + fy * (1 - fx) * v[:, y1, x0] + fy * fx * v[:, y1, x1])
    torch.testing.assert_close(ours[b, i * W + j], manual, atol=1e-5, rtol=0)


def test_inference_and_training_mix_agree():
    """The sparse inference path and the differentiable path compute the same keys."""
    plugin = scramble(StableSAMPlugin(C))
    x, routing = torch.randn(2, 16 * 16, C), torch.softmax(torch.randn(2, 2), -1)
    with torch.no_grad():
        plugin.s.fill_(1.3)
        fast, off_fast = plugin.mix(x, routing, (16, 16))
    slow, off_slow = plugin.mix(x.clone().requires_grad_(), routing, (16, 16))
    assert off_fast.abs().max() > 0.5
    torch.testing.assert_close(off_fast, off_slow.detach(), atol=0, rtol=0)
    torch.testing.assert_close(fast, slow.detach(), atol=1e-5, rtol=1e-5)


def test_gather_path_gradients_match_grid_sample():
    """Training differentiates through offsets and x* as grid_sample would."""
    g = torch.Generator().manual_seed(4)
    B, H, W, Cx = 1, 7, 8, 3
    x = torch.randn(B, H * W, Cx, generator=g)
    off = (torch.rand(B, 2, H, W, generator=g) - 0.5) * 3
    weight = torch.randn(B, H * W, Cx, generator=g)
    x1, off1 = x.clone().requires_grad_(), off.clone().requires_grad_()
    (StableSAMPlugin.sample(x1, off1) * weight).sum().backward()
    x2, off2 = x.clone().requires_grad_(), off.clone().requires_grad_()
    ys, xs = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    py, px = (ys + off2[:, 0]).clamp(0, H - 1), (xs + off2[:, 1]).clamp(0, W - 1)
    grid = torch.stack([2 * px / (W - 1) - 1, 2 * py / (H - 1) - 1], -1)
    ref = F.grid_sample(x2.view(B, H, W, Cx).permute(0, 3, 1, 2), grid, mode="bilinear",
                        align_corners=True).flatten(2).transpose(1, 2)
    (ref * weight).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(off1.grad, off2.grad, atol=1e-4, rtol=1e-4)


# --- the patch on real decoders ---------------------------------------------------------
def hq_decoder():
    from segment_anything_hq.modeling.mask_decoder_hq import MaskDecoderHQ
    from segment_anything_hq.modeling.transformer import TwoWayTransformer
    torch.manual_seed(0)
    return MaskDecoderHQ(transformer_dim=C, transformer=TwoWayTransformer(
        depth=2, embedding_dim=C, mlp_dim=64, num_heads=2), iou_head_depth=1,
        iou_head_hidden_dim=32, vit_dim=16).eval()


def run_sam(model, inputs, multimask=False):
    emb, pe, sparse, dense = inputs
    return model.mask_decoder(emb, pe, sparse, dense, multimask)


def test_untrained_plugin_reproduces_sam_exactly_and_detach_restores(tiny_sam_model):
    model = copy.deepcopy(tiny_sam_model)
    inputs = tiny_decoder_inputs(model, n_prompts=2)
    with torch.no_grad():
        ref = run_sam(model, inputs, multimask=True)
        with attached(model.mask_decoder, StableSAMPlugin(C)) as hook:
            out = run_sam(model, inputs, multimask=True)
        assert hook.last_alpha.shape == (2, 2) and hook.last_offsets.shape == (2, 2, 16, 16)
        assert "forward" not in model.mask_decoder.transformer.layers[1].__dict__
        assert torch.equal(run_sam(model, inputs, True)[0], ref[0])
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])


def test_forcing_alpha_to_regular_grid_is_plain_sam_for_any_offsets(tiny_sam_model):
    model = copy.deepcopy(tiny_sam_model)
    inputs = tiny_decoder_inputs(model)
    plugin = scramble(StableSAMPlugin(C))
    with torch.no_grad():
        plugin.s.fill_(1.0)
        ref = run_sam(model, inputs)
        with attached(model.mask_decoder, plugin) as hook:
            moved = run_sam(model, inputs)
            assert hook.last_offsets.abs().max() > 0.5
            plugin.drp[-1].weight.zero_()
            plugin.drp[-1].bias.copy_(torch.tensor([-100.0, 100.0]))   # softmax -> (0, 1) exactly
            forced = run_sam(model, inputs)
            assert hook.last_alpha.tolist() == [[0.0, 1.0]]
    assert not torch.allclose(moved[0], ref[0], atol=1e-3), "the scrambled plugin must matter"
    assert torch.equal(forced[0], ref[0]) and torch.equal(forced[1], ref[1])


@pytest.mark.parametrize("kind", ["sam", "hq", "sam2"])
def test_drp_reads_the_right_output_token(kind, tiny_sam_model, tiny_sam2_model):
    if kind == "sam2":
        model = copy.deepcopy(tiny_sam2_model)
        decoder, expected = model.sam_mask_decoder, 2     # [obj_score, iou, mask0, ...]
        emb, pe, sparse, dense = tiny_decoder_inputs(model, sam2=True)
        hr = [torch.randn(1, C // 8, 64, 64), torch.randn(1, C // 4, 32, 32)]
        call = lambda: decoder(emb, pe, sparse, dense, False, repeat_image=False, high_res_features=hr)  # noqa: E731
    else:
        model = copy.deepcopy(tiny_sam_model)
        emb, pe, sparse, dense = tiny_decoder_inputs(model)
        if kind == "hq":
            decoder, expected = hq_decoder(), 5            # [iou, mask0..3, hf]
            interm = [torch.randn(1, 16, 16, 16)]
            call = lambda: decoder(emb, pe, sparse, dense, False, False, interm)  # noqa: E731
        else:
            decoder, expected = model.mask_decoder, 1
            call = lambda: decoder(emb, pe, sparse, dense, False)  # noqa: E731
    assert output_token_index(decoder) == expected
    plugin = scramble(StableSAMPlugin(C))
    seen = norm1_outputs(decoder.transformer.layers[1])
    with torch.no_grad():
        ref = call()
        with attached(decoder, plugin) as hook:
            call()
        torch.testing.assert_close(hook.last_alpha, plugin.route(seen[-1][:, expected]), atol=0, rtol=0)
        with attached(decoder, StableSAMPlugin(C)):
            same = call()
    assert torch.equal(same[0], ref[0]), f"{kind}: the untrained plugin must be exact"


def test_attach_twice_replaces_and_bare_transformer_needs_an_index(tiny_sam_model):
    model = copy.deepcopy(tiny_sam_model)
    first, second = StableSAMPlugin(C), StableSAMPlugin(C)
    attach(model.mask_decoder, first)
    hook = attach(model.mask_decoder, second)
    assert model.mask_decoder.transformer.layers[1].forward is hook and hook.plugin is second
    assert len(model.mask_decoder.transformer._forward_pre_hooks) == 1
    detach(model.mask_decoder)
    assert not model.mask_decoder.transformer._forward_pre_hooks
    with pytest.raises(EngineError, match="out_idx"):
        attach(model.mask_decoder.transformer, first)
    assert attach(model.mask_decoder.transformer, first, out_idx=1).out_idx == 1


def test_prompts_are_routed_independently(tiny_sam_model):
    model = copy.deepcopy(tiny_sam_model)
    plugin = scramble(StableSAMPlugin(C))
    emb, pe, sparse, dense = tiny_decoder_inputs(model, n_prompts=2)
    with torch.no_grad(), attached(model.mask_decoder, plugin) as hook:
        batch = model.mask_decoder(emb, pe, sparse, dense, False)[0]
        alpha, offsets = hook.last_alpha, hook.last_offsets
        assert not torch.allclose(alpha[0], alpha[1], atol=1e-4)
        assert not torch.allclose(offsets[0], offsets[1], atol=1e-4)
        for i in range(2):
            alone = model.mask_decoder(emb, pe, sparse[i:i + 1], dense[i:i + 1], False)[0]
            torch.testing.assert_close(hook.last_alpha, alpha[i:i + 1], atol=1e-6, rtol=0)
            torch.testing.assert_close(alone, batch[i:i + 1], atol=1e-5, rtol=0)


# --- the training adapter -----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, tiny_sam_model):
    path = tmp_path_factory.mktemp("stable") / "tiny_sam.pth"
    torch.save(tiny_sam_model.state_dict(), path)
    return path


def bce_dice(logits, gt):
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * gt).sum() + 1) / (p.sum() + gt.sum() + 1)
    return F.binary_cross_entropy_with_logits(logits, gt) + dice


def test_host_stays_frozen_and_only_the_plugin_trains(tiny_ckpt):
    from training.api import TrainPrompt, build_adapter
    torch.manual_seed(0)
    adapter = build_adapter("stable-sam", str(tiny_ckpt))
    host_before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    plugin_before = {k: v.clone() for k, v in adapter.plugin.state_dict().items()}
    feats = {"image_embed": torch.randn(2, C, 16, 16)}
    prompts = [TrainPrompt("noisy-box", box=np.array([30., 40., 200., 220.])),
               TrainPrompt("points-1", points=np.array([[100., 90.]]), labels=np.ones(1))]
    opt = torch.optim.Adam(adapter.trainable.parameters(), lr=1e-2)
    adapter.train()
    assert not adapter.model.training
    out = adapter(feats, prompts)
    bce_dice(out.logits, (torch.rand(2, 1, 64, 64) > 0.5).float()).backward()
    assert all(p.grad is None and not p.requires_grad for p in adapter.model.parameters())
    grads = {k: p.grad for k, p in adapter.plugin.named_parameters()}
    for name in ("conv_in.weight", "conv_out.weight", "s"):
        assert grads[name].abs().sum() > 0, name
    # at the identity start x_def == x, so the routing has nothing to weigh yet
    assert not grads["drp.3.weight"].any()
    opt.step()
    assert all(torch.equal(v, host_before[k]) for k, v in adapter.model.state_dict().items())
    assert not torch.equal(adapter.plugin.state_dict()["conv_out.weight"], plugin_before["conv_out.weight"])
    opt.zero_grad()
    out = adapter(feats, prompts)
    bce_dice(out.logits, (torch.rand(2, 1, 64, 64) > 0.5).float()).backward()
    assert adapter.plugin.drp[3].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in adapter.model.parameters())
    opt.step()
    assert all(torch.equal(v, host_before[k]) for k, v in adapter.model.state_dict().items())


def test_adapter_option_drp_false_trains_the_dsp_alone(tiny_ckpt):
    from training.api import TrainPrompt, build_adapter
    with pytest.raises(ValueError, match="drp must be true or false"):
        build_adapter("stable-sam", str(tiny_ckpt), drp="maybe")
    adapter = build_adapter("stable-sam", str(tiny_ckpt), drp=False)
    assert adapter.plugin_state()["drp_on"] == 0
    adapter.train()
    out = adapter({"image_embed": torch.randn(1, C, 16, 16)},
                  [TrainPrompt("noisy-box", box=np.array([30., 40., 200., 220.]))])
    bce_dice(out.logits, (torch.rand(1, 1, 64, 64) > 0.5).float()).backward()
    grads = {k: p.grad for k, p in adapter.plugin.named_parameters()}
    assert grads["conv_out.weight"].abs().sum() > 0
    assert grads["s"] is None and grads["drp.3.weight"] is None     # no routing, no scale


def test_overfit_a_noisy_box_on_a_host_that_drifts(tiny_sam_model, tmp_path):
    """A tiny SAM decoder is first taught SAM's failure: tight box -> the object, noisy box
    -> a background band. Frozen, 80 Adam steps on the plugin alone fix the noisy box."""
    from training.adapters.sam_host import SamHost
    from training.api import TrainPrompt, build_adapter
    sam = copy.deepcopy(tiny_sam_model)
    host = SamHost(sam)
    img = np.random.default_rng(0).integers(0, 60, (256, 256, 3), dtype=np.uint8)
    img[80:180, 60:200] = (220, 40, 40)
    with torch.no_grad():
        emb = sam.image_encoder(host.preprocess(img)[None])
    target, band = torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64)
    target[..., 20:45, 15:50] = 1
    band[..., :20, :] = 1
    tight = TrainPrompt("tight-box", box=np.array([60., 80., 200., 180.]))
    noisy = TrainPrompt("noisy-box", box=np.array([20., 40., 250., 230.]))
    torch.manual_seed(0)
    opt = torch.optim.Adam(sam.mask_decoder.parameters(), lr=1e-2)
    pe = sam.prompt_encoder.get_dense_pe()
    for _ in range(30):
        loss = sum(bce_dice(sam.mask_decoder(emb, pe, *host.encode_prompt(p), False)[0], gt)
                   for p, gt in ((tight, target), (noisy, band)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(sam.state_dict(), tmp_path / "drifting.pth")

    adapter = build_adapter("stable-sam", str(tmp_path / "drifting.pth"))
    opt = torch.optim.Adam(adapter.trainable.parameters(), lr=3e-2)
    adapter.train()
    losses = []
    for _ in range(80):     # some CPUs sit on a plateau near 0.7 for ~30 steps first
        loss = bce_dice(adapter({"image_embed": emb}, [noisy]).logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 3, losses


# --- the "+DSP" ablation (paper Table 6): no Dynamic Routing Plugin -----------------------
@pytest.mark.parametrize("grad", [False, True])
def test_without_drp_the_keys_are_the_deformed_features_alone(grad):
    plugin = scramble(StableSAMPlugin(C, drp=False))
    x = torch.randn(2, 64, C)
    t_o = torch.randn(2, C)
    routing = plugin.routing(t_o)
    assert torch.equal(routing, torch.tensor([[1.0, 0.0]] * 2))
    with torch.set_grad_enabled(grad):
        mixed, offsets = plugin.mix(x, routing, (8, 8))
        x_def = plugin.sample(plugin.amplitude(x), offsets)
    torch.testing.assert_close(mixed, x_def, atol=1e-5, rtol=1e-5)   # s (scrambled) not applied
    assert not torch.allclose(mixed, x, atol=1e-3)
    with_drp = copy.deepcopy(plugin)
    with_drp.drp_on.fill_(1.0)
    assert not torch.allclose(with_drp.mix(x, with_drp.routing(t_o), (8, 8))[0], mixed, atol=1e-3)


def test_the_drp_flag_travels_with_the_plugin_and_old_plugins_keep_it_on():
    off = StableSAMPlugin.from_state(StableSAMPlugin(C, drp=False).state_dict())
    assert not off.uses_drp
    old = {k: v for k, v in StableSAMPlugin(C).state_dict().items() if k != "drp_on"}
    assert StableSAMPlugin.from_state(old).uses_drp
