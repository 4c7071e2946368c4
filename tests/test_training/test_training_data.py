"""Training data (training.data, training.occlusion): our own exports and standard COCO
files load with exact masks and the annotator's prompts, group-aware splits, clear
errors, samples keyed by pixel content, and seeded occlusion variants."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image
from pycocotools import mask as mask_utils

from annotator.core import images as core_images
from annotator.core.dataset import CategoryRecord, Dataset, ImageRecord
from annotator.core.errors import FormatError, ImageLoadError
from annotator.core.formats import coco
from annotator.core.formats._split import Split, split_image_ids
from annotator.core.store import Project
from annotator.ui.tools import PromptState
from engines.files.cache import image_digest
from training.data import (CocoInstances, ImageEntry, load_image, split_by_group,
                           stored_prompt)
from training.occlusion import occlusion_samples, occlusion_variant


def write_image(path: Path, w: int, h: int, seed: int, orientation: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    if orientation == 1:
        img.save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        img.save(path, exif=exif, quality=95)


def shapes(h: int, w: int) -> list[np.ndarray]:
    """A holed disc, a 1-pixel line plus a lone pixel, a rectangle on the border."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(yy - h / 2, xx - w / 2)
    ring = (r < min(h, w) / 3) & (r > min(h, w) / 6)
    line = np.zeros((h, w), bool)
    line[2, 3:w - 3] = True
    line[h - 2, 1] = True
    rect = np.zeros((h, w), bool)
    rect[h - 6:, w - 9:] = True
    return [ring, line, rect]


@pytest.fixture()
def exported(tmp_path):
    """A project with groups, prompts from the tool's own log, a rotated JPEG; exported."""
    root = tmp_path / "images"
    write_image(root / "a.png", 40, 30, 1)
    write_image(root / "sub/b.png", 36, 44, 2)
    write_image(root / "c.jpg", 50, 34, 3, orientation=6)     # displayed 34 x 50
    write_image(root / "d.png", 20, 20, 4)                    # no annotations
    names = ["a.png", "sub/b.png", "c.jpg", "d.png"]
    groups = ["scene1", "scene1", "", "scene2"]
    infos = [core_images.read_image_info(root / n) for n in names]
    records = [ImageRecord(i + 1, n, info.width, info.height, group=g)
               for i, (n, info, g) in enumerate(zip(names, infos, groups))]
    masks: dict[int, np.ndarray] = {}
    logs: dict[int, list] = {}
    with Project.create(tmp_path / "p.annot", root) as project:
        project.import_dataset(Dataset(images=records, categories=[
            CategoryRecord(1, "thing"), CategoryRecord(2, "stuff")]))
        for img in project.images()[:3]:
            for k, mask in enumerate(shapes(img.height, img.width)):
                state = PromptState(image_id=img.id)
                if k == 0:
                    state.set_box(3.333, 4.0, 30.5, 20.25)
                    state.add_point(10.0, 12.5, 1)
                    state.add_point(2.0, 3.0, 0)
                elif k == 1:
                    state.set_text("cable")
                log = state.log()
                ann = project.add_annotation(img.id, 1 + k % 2, mask, engine="sam",
                                             prompts=log)
                masks[ann.id], logs[ann.id] = mask, log
        out = tmp_path / "export.json"
        coco.write(project.export_dataset(), out)
    return out, root, masks, logs, infos


def test_round_trip_through_our_exporter(exported):
    out, root, masks, logs, infos = exported
    data = CocoInstances.load(out, root)
    assert [(i.file_name, i.size, i.group) for i in data.images] == [
        ("a.png", (30, 40), "scene1"), ("sub/b.png", (44, 36), "scene1"),
        ("c.jpg", (50, 34), ""), ("d.png", (20, 20), "scene2")]
    assert data.categories == {1: "thing", 2: "stuff"}
    assert {i.ann_id for i in data.instances} == set(masks)
    for inst in data.instances:
        assert np.array_equal(inst.mask, masks[inst.ann_id])
        assert inst.area == masks[inst.ann_id].sum()
        assert inst.category == {1: "thing", 2: "stuff"}[inst.category_id]
        log = logs[inst.ann_id]
        if any(e["type"] == "box" for e in log):
            p = inst.prompt
            assert p.kind == "stored"
            assert np.allclose(p.box, [3.33, 4.0, 30.5, 20.25])
            assert p.points.tolist() == [[10.0, 12.5], [2.0, 3.0]] and p.labels.tolist() == [1, 0]
        else:                          # a text prompt or nothing: no geometry to train on
            assert inst.prompt is None
    # the rotated JPEG is read as displayed, exactly as the annotator shows it
    c = data.images[2]
    pixels = load_image(c.path)
    assert pixels.shape == (50, 34, 3)
    assert np.array_equal(pixels, core_images.load_image(c.path))
    samples = data.samples()
    assert [s.image_id for s in samples] == [1, 2, 3]        # d.png has no instances
    assert samples[2].key == image_digest(pixels)
    assert len(samples[0].instances) == 3


def test_standard_coco_with_polygons_crowds_and_filters(tmp_path):
    write_image(tmp_path / "img" / "x.png", 30, 20, 5)
    square = [2, 2, 12, 2, 12, 12, 2, 12]
    tri = [15, 1, 28, 1, 28, 18]
    crowd = mask_utils.encode(np.asfortranarray(np.pad(np.ones((4, 4), np.uint8), ((14, 2), (2, 24)))))
    doc = {"images": [{"id": 7, "file_name": "x.png", "width": 30, "height": 20}],
           "categories": [{"id": 1, "name": "box"}, {"id": 3, "name": "tri"}],
           "annotations": [
               {"id": 1, "image_id": 7, "category_id": 1, "segmentation": [square],
                "area": 100, "bbox": [2, 2, 10, 10], "iscrowd": 0},
               {"id": 2, "image_id": 7, "category_id": 3, "segmentation": [tri],
                "area": 1, "bbox": [0, 0, 1, 1], "iscrowd": 0},
               {"id": 3, "image_id": 7, "category_id": 1, "iscrowd": 1, "area": 16,
                "bbox": [2, 14, 4, 4],
                "segmentation": {"size": [20, 30], "counts": _uncompressed(crowd)}}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    data = CocoInstances.load(path, tmp_path / "img")
    assert [i.ann_id for i in data.instances] == [1, 2]     # crowd left out by default
    for inst, poly in zip(data.instances, [square, tri]):
        ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([poly], 20, 30)))
        assert np.array_equal(inst.mask, ref.astype(bool)) and inst.prompt is None
        assert inst.area == ref.sum()                       # from the mask, not the file
    assert data.images[0].group == ""
    with_crowd = CocoInstances.load(path, tmp_path / "img", include_crowd=True)
    assert with_crowd.instances[2].iscrowd and with_crowd.instances[2].mask.sum() == 16
    only_tri = CocoInstances.load(path, tmp_path / "img", category_names=["tri"])
    assert [i.category for i in only_tri.instances] == ["tri"]
    areas = [i.area for i in data.instances]
    assert areas[0] == 100 and areas[1] > 100
    big = CocoInstances.load(path, tmp_path / "img", min_area=101)
    assert [i.ann_id for i in big.instances] == [2]
    with pytest.raises(ValueError, match="no category named 'dog'; its categories: box, tri"):
        CocoInstances.load(path, tmp_path / "img", category_names=["dog"])


def _uncompressed(rle: dict) -> list[int]:
    m = mask_utils.decode(rle).ravel(order="F")
    runs, current, n = [], 0, 0
    for v in m:
        if v != current:
            runs.append(n)
            current, n = v, 0
        n += 1
    return runs + [n]


def test_errors_name_the_file_and_the_problem(exported, tmp_path):
    out, root, *_ = exported
    with pytest.raises(FormatError, match="missing.json: file not found"):
        CocoInstances.load(tmp_path / "missing.json", root)
    with pytest.raises(FormatError, match="images folder .*nowhere does not exist"):
        CocoInstances.load(out, tmp_path / "nowhere")
    moved = tmp_path / "moved"
    shutil.copytree(root, moved)
    (moved / "sub" / "b.png").unlink()
    with pytest.raises(FormatError, match=r"image id 2 \(sub/b.png\).*sub/b.png does not exist"):
        CocoInstances.load(out, moved)
    write_image(moved / "sub" / "b.png", 37, 44, 2)
    with pytest.raises(FormatError, match=r"size 36x44 disagrees with the image file, which is 37x44"):
        CocoInstances.load(out, moved)
    doc = json.loads(out.read_text())
    doc["annotations"][0]["prompts"] = [{"type": "box", "box": [1, 2, 3]}]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    ann_id = doc["annotations"][0]["id"]
    with pytest.raises(FormatError, match=rf"annotation id {ann_id}, prompts\[0\]: box must be"):
        CocoInstances.load(bad, root)
    with pytest.raises(ImageLoadError, match="nothing.png"):
        load_image(tmp_path / "nothing.png")


def test_stored_prompt_forms():
    assert stored_prompt([]) is None and stored_prompt(None) is None
    assert stored_prompt([{"type": "text", "text": "cat"}, {"type": "answer"}]) is None
    p = stored_prompt([{"points": [[1, 2], [3, 4]], "labels": [1, 0]}, {"box": [9, 8, 1, 2]}])
    assert p.points.tolist() == [[1, 2], [3, 4]] and p.labels.tolist() == [1, 0]
    assert p.box.tolist() == [1, 2, 9, 8]                   # corners ordered
    with pytest.raises(FormatError, match="label 0 or 1"):
        stored_prompt([{"type": "point", "x": 1, "y": 2, "label": 5}], "f.json", "annotation id 3")


def in_memory(groups: list[str]) -> CocoInstances:
    images = [ImageEntry(i + 1, f"{i}.png", Path(f"{i}.png"), (4, 4), g)
              for i, g in enumerate(groups)]
    return CocoInstances(images, [], {})


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from(["", "", "a", "b", "c", "d", "e"]), min_size=1, max_size=30),
       st.floats(0.05, 0.95), st.integers(0, 10**6))
def test_split_by_group_properties(groups, fraction, seed):
    data = in_memory(groups)
    train, val = split_by_group(data, fraction, seed)
    t_ids, v_ids = {i.id for i in train.images}, {i.id for i in val.images}
    assert not t_ids & v_ids and t_ids | v_ids == {i.id for i in data.images}
    named = lambda part: {i.group for i in part.images if i.group}
    assert not named(train) & named(val)
    units = len({g for g in groups if g}) + groups.count("")
    if units >= 2:
        assert t_ids and v_ids
    again = split_by_group(data, fraction, seed)
    assert ({i.id for i in again[0].images}, {i.id for i in again[1].images}) == (t_ids, v_ids)
    ds = Dataset(images=[ImageRecord(i.id, i.file_name, 4, 4, group=i.group) for i in data.images])
    e_train, e_val = split_image_ids(ds, Split("group", fraction, seed))
    if e_train and e_val:        # where the exporter's split is usable, it is the same split
        assert (e_train, e_val) == (t_ids, v_ids)


def test_occlusion_variant_pastes_the_cutout_over_the_target_box():
    h, w = 60, 80
    image = np.full((h, w, 3), 10, np.uint8)
    target = np.zeros((h, w), bool)
    target[10:50, 20:60] = True                             # 40 x 40 box
    occ_image = np.full((30, 30, 3), 200, np.uint8)
    occ_mask = np.hypot(*np.mgrid[-15:15, -15:15]) < 12
    for seed in range(30):
        new, new_target = occlusion_variant(image, target, occ_image, occ_mask,
                                            np.random.default_rng(seed))
        paste = (new == 200).all(-1)
        assert paste.any() and np.array_equal(new_target, target & ~paste)
        assert new_target.any() and np.array_equal(new[~paste], image[~paste])
        ys, xs = np.nonzero(paste)
        assert 0.3 * 40 - 2 <= np.ptp(xs) + 1 <= 0.7 * 40 + 1
        cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
        assert 19 <= cx <= 61 and 9 <= cy <= 51              # centred inside the target box
        again = occlusion_variant(image, target, occ_image, occ_mask, np.random.default_rng(seed))
        assert np.array_equal(again[0], new) and np.array_equal(again[1], new_target)
    with pytest.raises(ValueError, match="matching sizes"):
        occlusion_variant(image, target[:5], occ_image, occ_mask, np.random.default_rng(0))


def test_occlusion_samples_are_seeded_variants_with_their_own_keys(exported):
    out, root, *_ = exported
    data = CocoInstances.load(out, root)
    originals = {s.image_id: s for s in data.samples()}
    variants = occlusion_samples(data, 6, seed=3)
    assert [v.variant for v in variants] == [1, 2, 3, 4, 5, 6]
    again = occlusion_samples(data, 6, seed=3)
    other = occlusion_samples(data, 6, seed=4)
    assert [v.key for v in variants] == [v.key for v in again]
    assert [v.key for v in variants] != [v.key for v in other]
    for v in variants:
        base = originals[v.image_id]
        image = v.image()
        assert image.shape[:2] == v.size == base.size and v.group == base.group
        assert v.key != base.key and v.key == image_digest(image)
        assert all(inst.prompt is None for inst in v.instances)
        by_id = {i.ann_id: i for i in base.instances}
        changed = (image != base.image()).any(-1)
        assert changed.any()
        for inst in v.instances:        # masks only lose pixels, where the paste went
            old = by_id[inst.ann_id].mask
            assert not (inst.mask & ~old).any()
            assert not (old & ~inst.mask & ~changed).any()     # noise images: no equal pixel
        union = sum(i.mask.astype(int) for i in v.instances)
        assert union.max() <= 1
    assert sum(sum(i.area for i in originals[v.image_id].instances) >
               sum(i.area for i in v.instances) for v in variants) >= 4
    assert occlusion_samples(data, 0) == []
    with pytest.raises(ValueError, match="at least 2 instances"):
        occlusion_samples(data.subset([]), 1)

