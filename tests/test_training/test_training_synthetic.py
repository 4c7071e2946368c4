"""The generated dataset (training.synthetic): deterministic, loadable by training.data,
disjoint visible masks, thin parts, annotator-like prompts, a command line."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from training import synthetic
from training.data import CocoInstances


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn")
    path = synthetic.generate(out, 5, size=64, seed=0)
    return out, path


def test_generation_is_deterministic_per_seed(generated, tmp_path):
    out, path = generated
    assert path == out / "instances.json"
    again = synthetic.generate(tmp_path / "again", 5, size=64, seed=0)
    assert files(out) == files(again.parent)
    other = synthetic.generate(tmp_path / "other", 5, size=64, seed=1)
    assert files(out)["images/000000.png"] != files(other.parent)["images/000000.png"]
    fewer = synthetic.generate(tmp_path / "fewer", 2, size=64, seed=0)   # image i: (seed, i)
    assert files(fewer.parent)["images/000001.png"] == files(out)["images/000001.png"]


def test_the_dataset_loads_with_disjoint_nonempty_masks_and_prompts(generated):
    out, path = generated
    data = CocoInstances.load(path, out / "images")
    assert [i.size for i in data.images] == [(64, 64)] * 5
    assert [i.group for i in data.images] == ["g0000"] * 4 + ["g0001"]
    assert set(data.categories.values()) == set(synthetic.CATEGORIES)
    per_image = data.by_image()
    for img in data.images:
        instances = per_image[img.id]
        assert 1 <= len(instances) <= 5
        assert any(i.category in synthetic.THIN for i in instances)
        stack = np.stack([i.mask for i in instances])
        assert stack.any(axis=(1, 2)).all()
        assert stack.sum(0).max() == 1                          # visible masks are disjoint
        for inst in instances:
            p = inst.prompt
            assert p is not None and (p.box is not None or p.points is not None)
            if p.box is not None:
                assert 0 <= p.box[0] < p.box[2] <= 64 and 0 <= p.box[1] < p.box[3] <= 64
            if p.points is not None:
                xs, ys = p.points[:, 0].astype(int), p.points[:, 1].astype(int)
                assert inst.mask[ys, xs].all() and (p.labels == 1).all()
    doc = json.loads(path.read_text())
    ann = doc["annotations"][0]
    assert isinstance(ann["segmentation"]["counts"], str) and ann["engine"] == "synthetic"
    assert ann["prompts"][-1]["type"] == "answer"
    assert {e["type"] for a in doc["annotations"] for e in a["prompts"]} == {"box", "point", "answer"}


def test_some_instances_have_thin_parts(generated):
    out, path = generated
    data = CocoInstances.load(path, out / "images")
    kernel = np.ones((3, 3), np.uint8)
    lost = []
    for inst in data.instances:
        m = inst.mask.astype(np.uint8)
        opened = cv2.morphologyEx(m, cv2.MORPH_OPEN, kernel)
        lost.append((inst.category, 1 - opened.sum() / m.sum()))
    # a 3x3 opening removes every part narrower than 3 px: thin objects lose much of
    # their mask to it, filled ones almost nothing
    assert max(f for c, f in lost if c in synthetic.THIN) > 0.3
    filled = [f for c, f in lost if c in synthetic.FILLED]
    assert not filled or np.median(filled) < 0.15


def test_command_line(tmp_path, capsys):
    assert synthetic.main([str(tmp_path / "cli"), "--images", "2", "--size", "48",
                           "--seed", "3"]) == 0
    said = capsys.readouterr().out
    assert "wrote 2 images (48x48)" in said and "instances.json" in said
    assert sorted(p.name for p in (tmp_path / "cli" / "images").iterdir()) == [
        "000000.png", "000001.png"]
    with pytest.raises(SystemExit):
        synthetic.main([str(tmp_path / "bad"), "--images", "0"])


def test_crowded_scenes_pack_more_objects_closer_and_leave_the_default_unchanged(generated, tmp_path):
    out, _ = generated
    assert synthetic.main([str(tmp_path / "plain"), "--images", "5", "--size", "64"]) == 0
    assert files(tmp_path / "plain") == files(out)          # the flag's draws are its own
    crowded = synthetic.generate_crowded(tmp_path / "crowd", 12, size=128, seed=0)
    plain = synthetic.generate(tmp_path / "plain128", 12, size=128, seed=0)

    def stats(path):
        doc = json.loads(path.read_text())
        per_image, spread = {}, []
        for a in doc["annotations"]:
            x, y, w, h = a["bbox"]
            per_image.setdefault(a["image_id"], []).append((x + w / 2, y + h / 2))
        for centres in per_image.values():
            spread.append(np.asarray(centres).std(axis=0).mean())
        return len(doc["annotations"]) / len(doc["images"]), float(np.mean(spread))

    (n_crowd, s_crowd), (n_plain, s_plain) = stats(crowded), stats(plain)
    assert n_crowd > n_plain and s_crowd < s_plain
    assert synthetic.main([str(tmp_path / "cli"), "--crowded", "--images", "1", "--size", "48"]) == 0
    assert "--crowded" in json.loads((tmp_path / "cli" / "instances.json").read_text())["info"]["description"]
