"""The sam-mi engine end to end on tiny random-weight CLIP and SAM files: both modes, the
shared host embedding, and every bad input of issue 17 (empty / too many / non-Latin
class names, a wrong or text-only CLIP file, no SAM host)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engines.hosts import tiny_sam
from engines.sam_mi import (
    SamMiConfig,
    SamMiEngine,
    save_sam_mi_plugin,
    tiny_clip,
    tiny_sam_mi,
)
from engines.sam_mi.clip import arch_name, clip_shapes
from engines.types import CancelledError, CheckpointError, OptionsError

LENIENT = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sammi")
    torch.save(tiny_sam(img_size=128).state_dict(), root / "sam_tiny.pth")
    clip = tiny_clip()
    torch.save(clip.state_dict(), root / "clip_tiny.pt")
    model, _ = tiny_sam_mi()
    shapes = clip_shapes(clip.state_dict(), "clip")
    plugin = save_sam_mi_plugin(root / "plugins" / "sam_mi_tiny.safetensors", model,
                                clip_path=root / "clip_tiny.pt", clip_name=arch_name(shapes),
                                classes_seen=["square", "disc"])
    return root, plugin


@pytest.fixture(scope="module")
def image():
    img = np.full((96, 128, 3), 30, np.uint8)
    img[10:50, 10:60] = (220, 30, 30)
    yy, xx = np.mgrid[:96, :128]
    img[(yy - 60) ** 2 + (xx - 95) ** 2 < 400] = (30, 30, 220)
    return img


@pytest.fixture(scope="module")
def free(files):
    root, _ = files
    return SamMiEngine.from_checkpoint(root / "sam_tiny.pth", clip=root / "clip_tiny.pt")


@pytest.fixture(scope="module")
def trained(files):
    root, plugin = files
    return SamMiEngine.from_checkpoint(root / "sam_tiny.pth", clip=root / "clip_tiny.pt", plugin=plugin)


def _check_proposals(props, names, size):
    n = len(props)
    assert props.masks.shape == (n, *size) and props.masks.dtype == bool
    assert props.boxes.shape == (n, 4) and props.scores.shape == (n,)
    assert props.classes == tuple(names)
    assert props.class_scores.shape == (n, len(names)) if n else True
    for i in range(n):
        k = names.index(props.class_names[i])
        assert np.isclose(props.scores[i], props.class_scores[i, k], atol=1e-6)
    assert list(props.scores) == sorted(props.scores, reverse=True)
    assert props.extras["semantic"].shape == size
    # SAM ran on the points, or had answered every one of them on this image before
    assert props.extras["decoder_passes"] >= 1 or props.extras["points_cached"] == len(props.extras["points"])


@pytest.mark.parametrize("which", ["free", "trained"])
def test_both_modes_propose_instances_with_class_names(request, which, image):
    engine = request.getfixturevalue(which)
    assert engine.mode == ("training-free" if which == "free" else "trained")
    emb = engine.embed(image)
    names = ["red square", "blue disc", "background"]
    props = engine.propose(emb, {"classes": names, **LENIENT})
    assert props.extras["mode"] == engine.mode
    assert props.extras["sam_masks"] >= 1
    _check_proposals(props, names, image.shape[:2])
    again = engine.propose(emb, {"classes": names, **LENIENT})
    assert np.array_equal(props.masks, again.masks) and np.array_equal(props.scores, again.scores)
    seeded = engine.propose(emb, {"classes": names, "sampling": "bernoulli", "seed": 3, **LENIENT})
    _check_proposals(seeded, names, image.shape[:2])
    everything = engine.propose(emb, {"classes": names, "keep_unassigned": True, **LENIENT})
    assert len(everything) >= len(props)


def test_modes_have_their_own_backbone_keys_and_share_the_host_embedding(free, trained, image):
    assert free.backbone_key != trained.backbone_key
    assert free.backbone_key.endswith(free.host.backbone_key)
    host_emb = free.host.embed(image)
    emb = free.embed(image, host_embedding=host_emb)
    assert torch.equal(emb.features["sam.image_embed"], host_emb.features["image_embed"])
    assert free.host_embedding(emb).backbone_key == free.host.backbone_key
    with pytest.raises(OptionsError, match="embedding was made by"):
        trained.propose(emb, {"classes": ["a"]})


def test_bad_class_lists(free, image):
    emb = free.embed(image)
    for empty in ([], " , . ;", ["", "  "]):
        with pytest.raises(OptionsError, match="classes is empty"):
            free.propose(emb, {"classes": empty})
    with pytest.raises(OptionsError, match="classes is empty"):
        free.propose(emb, None)
    with pytest.raises(OptionsError, match="at most 256 class names a request, got 500"):
        free.propose(emb, {"classes": [f"class {i}" for i in range(500)]})
    with pytest.raises(OptionsError, match="unknown option"):
        free.propose(emb, {"classes": ["a"], "colour": 1})
    with pytest.raises(OptionsError, match="sampling"):
        free.propose(emb, {"classes": ["a"], "sampling": "random"})
    names = ["猫", "собака", "قطة", "कुत्ता", "🐶", "x" * 100]
    props = free.propose(emb, {"classes": names, **LENIENT})
    _check_proposals(props, names, image.shape[:2])
    split = free.propose(emb, {"classes": "Car, car. person;", **LENIENT})
    assert split.classes == ("Car", "person")


def test_trained_mode_says_which_names_it_has_not_seen(trained, image):
    props = trained.propose(trained.embed(image), {"classes": ["Square", "tree"], **LENIENT})
    assert props.extras["unseen"] == ["tree"]
    assert trained.classes_seen == ("square", "disc")


def test_k_above_pad_len_in_trained_mode(trained, image):
    names = [f"thing {i}" for i in range(12)]        # tiny pad_len = 8
    props = trained.propose(trained.embed(image), {"classes": names, **LENIENT})
    _check_proposals(props, names, image.shape[:2])


def test_text_embeddings_are_cached_per_name(free):
    a = free.encode_text(["cat", "dog"])
    b = free.encode_text(["dog", "cat", "bird"])
    assert torch.equal(a[0, 0], b[0, 1]) and torch.equal(a[0, 1], b[0, 0])
    assert torch.allclose(b, free.model.encode_text(["dog", "cat", "bird"]), atol=1e-6)
    assert list(free._text)[-3:] == ["dog", "cat", "bird"]


def test_cancel(free, image):
    emb = free.embed(image)
    with pytest.raises(CancelledError):
        free.propose(emb, {"classes": ["a"]}, cancel=lambda: True)


def test_missing_sam_host_names_the_file(files):
    root, _ = files
    with pytest.raises(CheckpointError, match=r"sam-mi needs a SAM or SAM 2 checkpoint .*nope\.pth "
                                              r"does not exist .*sam_vit_b_01ec64\.pth"):
        SamMiEngine.from_checkpoint(root / "nope.pth", clip=root / "clip_tiny.pt")
    with pytest.raises(CheckpointError, match="not a SAM or SAM 2 checkpoint"):
        SamMiEngine.from_checkpoint(root / "clip_tiny.pt", clip=root / "clip_tiny.pt")


def test_missing_clip_names_what_was_looked_for(files, tmp_path):
    root, _ = files
    sam = tmp_path / "sam_tiny.pth"
    sam.write_bytes((root / "sam_tiny.pth").read_bytes())
    with pytest.raises(CheckpointError, match=r"needs a CLIP checkpoint .*ViT-B-16\.pt"):
        SamMiEngine.from_checkpoint(sam)
    with pytest.raises(CheckpointError, match="CLIP checkpoint .*gone.pt does not exist"):
        SamMiEngine.from_checkpoint(sam, clip=tmp_path / "gone.pt")


def test_text_only_and_wrong_size_clip_files(files, tmp_path):
    root, plugin = files
    state = tiny_clip().state_dict()
    text_only = {k: v for k, v in state.items() if not k.startswith("visual.")}
    torch.save(text_only, tmp_path / "text.pt")
    with pytest.raises(CheckpointError, match="text tower only"):
        SamMiEngine.from_checkpoint(root / "sam_tiny.pth", clip=tmp_path / "text.pt")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no CLIP weights at all"):
        SamMiEngine.from_checkpoint(root / "sam_tiny.pth", clip=tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"is a CLIP ViT-w32/16 .* not ViT-B-16"):
        SamMiEngine.from_checkpoint(root / "sam_tiny.pth", clip=root / "clip_tiny.pt", clip_arch="ViT-B-16")
    wide = tiny_clip(width=48, embed_dim=48).state_dict()
    torch.save(wide, tmp_path / "clip_wide.pt")
    with pytest.raises(CheckpointError, match=r"trained on CLIP .clip:ViT-w32/16., but .*clip_wide.pt is .clip:ViT-w48/16"):
        SamMiEngine.from_checkpoint(root / "sam_tiny.pth", clip=tmp_path / "clip_wide.pt", plugin=plugin)
    with pytest.raises(CheckpointError, match="needs width 768"):
        SamMiEngine.from_checkpoint(root / "sam_tiny.pth", clip=root / "clip_tiny.pt", config=SamMiConfig())


def test_a_plugin_on_another_clip_file_is_refused(files, tmp_path):
    root, plugin = files
    torch.save(tiny_clip(seed=5).state_dict(), tmp_path / "clip_other.pt")
    with pytest.raises(CheckpointError, match="trained on another CLIP file"):
        SamMiEngine.from_checkpoint(root / "sam_tiny.pth", clip=tmp_path / "clip_other.pt", plugin=plugin)


def test_the_dense_features_of_a_loaded_clip_match_the_built_one(files):
    root, _ = files
    from engines.sam_mi.clip import DenseClip, load_clip
    loaded, shapes = load_clip(root / "clip_tiny.pt")
    assert shapes["width"] == 32 and shapes["grid"] == 6 and shapes["layers"] == 4
    x = torch.randn(1, 3, 96, 96)
    a, taps = DenseClip(loaded, (1, 2))(x)
    b, _ = DenseClip(tiny_clip(), (1, 2))(x)
    assert a.shape == (1, 32, 6, 6) and len(taps) == 2 and torch.allclose(a, b, atol=1e-5)
    big, _ = DenseClip(loaded, (1, 2))(torch.randn(1, 3, 128, 128))          # resized positions
    assert big.shape == (1, 32, 8, 8)
    cls = loaded.encode_image(x)                    # the ordinary path still works
    assert cls.shape == (1, 32)


def test_the_embedding_survives_the_disk_cache(free, image, tmp_path):
    from engines.files.cache import CacheKey, DiskCache
    emb = free.embed(image)
    cache = DiskCache(tmp_path / "cache")
    key = CacheKey("0" * 64, free.backbone_key, free.input_side)
    assert cache.put(key, emb)
    back = cache.get(key)
    assert set(back.features) == set(emb.features) and back.meta == emb.meta
    opts = {"classes": ["red square", "blue disc"], **LENIENT}
    a, b = free.propose(emb, opts), free.propose(back, opts)
    assert np.array_equal(a.masks, b.masks) and np.allclose(a.scores, b.scores)


def test_filters_that_keep_no_sam_mask_say_so(free, image):
    emb = free.embed(image)
    names = ["square", "disc"]
    strict = free.propose(emb, {"classes": names, "pred_iou_thresh": 1.0})   # SAM's IoU never exceeds 1
    assert len(strict) == 0 and strict.class_names == []
    assert strict.extras["sam_answers"] > 0 and strict.extras["sam_masks"] == 0
    assert "kept none of its" in strict.extras["note"] and "pred_iou_thresh 1.0" in strict.extras["note"]
    lenient = free.propose(emb, {"classes": names, **LENIENT})
    assert lenient.extras["sam_masks"] > 0 and "note" not in lenient.extras
