"""Inputs that used to end in a traceback or a silently wrong result (issue 19, items 5
and 6): each now gets one line naming the file or option and the problem, exit status
2 (1 for "the engine found nothing"), and changes nothing."""
from __future__ import annotations

import errno
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.cli import main
from annotator.core.formats import coco, yolo
from annotator.core.store import Project
from formats_data import dump_project, hard_dataset, write_images

REPO = Path(__file__).resolve().parents[2]
COFFEE = REPO / "resources" / "samples" / "coffee.png"


@pytest.fixture()
def work(tmp_path: Path, monkeypatch, capsys) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANNOTATOR_MODELS_DIR", str(tmp_path / "models"))
    write_images(tmp_path / "images")
    ds, _ = hard_dataset()
    coco.write(ds, tmp_path / "in.json")
    assert main(["import", "coco", "in.json", "--images", "images"]) == 0
    capsys.readouterr()
    return tmp_path


def fails(capsys, *argv: str, says: tuple[str, ...], status: int = 2) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == status, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for text in says:
        assert text in err, err
    return err


def fails_to_parse(capsys, *argv: str, says: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    for text in says:
        assert text in err, err


# ---- item 5: tracebacks --------------------------------------------------------------

@pytest.mark.parametrize("where", ["mkstemp", "replace"])
def test_export_to_a_read_only_filesystem(work, capsys, monkeypatch, where):
    # Tests run as root, whom chmod does not stop: make the write itself fail as EROFS.
    def erofs(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(args[0] if args else ""))
    from annotator.core.formats import _common
    if where == "mkstemp":
        monkeypatch.setattr(tempfile, "mkstemp", erofs)
    else:
        monkeypatch.setattr(_common.os, "replace", erofs)
    before = dump_project(work / "annotations.sqlite")
    fails(capsys, "export", "coco", "ro/out.json",
          says=("ro/out.json: Read-only file system",))
    assert not (work / "ro" / "out.json").exists()
    assert dump_project(work / "annotations.sqlite") == before


def test_export_yolo_onto_an_existing_file(work, capsys):
    (work / "labels.txt").write_text("mine")
    fails(capsys, "export", "yolo", "labels.txt",
          says=("labels.txt: is a file, not a folder", "yolo"))
    assert (work / "labels.txt").read_text() == "mine"


def test_export_coco_onto_a_folder(work, capsys):
    (work / "out").mkdir()
    fails(capsys, "export", "coco", "out", says=(str(work / "out") + ": is a folder",))
    assert list((work / "out").iterdir()) == []


def test_segment_out_pointing_at_a_folder(work, capsys):
    (work / "masks").mkdir()
    fails(capsys, "segment", str(COFFEE), "--point", "290,150", "--out", "masks",
          says=("--out masks: is a folder",))


def test_segment_point_label_nan(capsys):
    fails_to_parse(capsys, "segment", str(COFFEE), "--point", "290,150,nan",
                   says=("point '290,150,nan'", "finite"))


def test_segment_point_label_1e30(capsys):
    fails_to_parse(capsys, "segment", str(COFFEE), "--point", "290,150,1e30",
                   says=("point '290,150,1e30'", "LABEL must be 1 (object) or 0"))


def test_segment_classic_engine_with_a_checkpoint(work, capsys):
    (work / "model.pth").write_bytes(b"weights")
    fails(capsys, "segment", str(COFFEE), "--point", "290,150", "--engine", "classic",
          "--checkpoint", "model.pth", says=("--checkpoint model.pth", "classic takes no "
                                              "checkpoint"))


# The YOLO `category_ids` value too large: tests/test_external_ids.py
# (test_a_yolo_category_id_too_large_is_refused).


# ---- item 6: silently wrong results ----------------------------------------------------

@pytest.mark.parametrize("label", ["0.5", "1.9", "-1", "2"])
def test_segment_refuses_a_label_that_is_not_0_or_1(capsys, label):
    fails_to_parse(capsys, "segment", str(COFFEE), "--point", f"290,150,{label}",
                   says=(f"point '290,150,{label}'", "LABEL must be 1 (object) or 0"))


@pytest.mark.parametrize("name", ["m.jpg", "m.JPEG", "m.webp", "m.txt", "mask"])
def test_segment_refuses_an_out_suffix_it_cannot_write_exactly(work, capsys, name):
    fails(capsys, "segment", str(COFFEE), "--point", "290,150", "--out", name,
          says=(f"--out {name}", ".png"))
    assert not (work / name).exists()


@pytest.mark.parametrize("name, image_format", [("m.png", "PNG"), ("m.tif", "TIFF"),
                                                ("m.tiff", "TIFF"), ("m.bmp", "BMP")])
def test_segment_writes_the_format_the_suffix_names(work, capsys, name, image_format):
    assert main(["segment", str(COFFEE), "--point", "290,150", "--out", name]) == 0
    with Image.open(work / name) as img:
        assert img.format == image_format and img.size == (600, 400)
        assert set(np.unique(np.asarray(img))) <= {0, 255}


def test_segment_refuses_to_write_over_its_input(work, capsys):
    photo = work / "photo.png"
    photo.write_bytes(COFFEE.read_bytes())
    fails(capsys, "segment", str(photo), "--point", "290,150", "--out", str(photo),
          says=("is the input image",))
    assert photo.read_bytes() == COFFEE.read_bytes()


def test_an_empty_answer_says_so_and_writes_nothing(work, capsys):
    err = fails(capsys, "segment", str(COFFEE), "--point", "10,10,0", "--out", "m.png",
                status=1, says=("empty mask", "nothing written"))
    assert "classic" in err and not (work / "m.png").exists()


def test_a_grayscale_photo_is_segmented_as_its_rgb_copy(work, capsys):
    gray = Image.open(COFFEE).convert("L")
    gray.save(work / "gray.png")                          # mode L, one channel
    gray.convert("RGB").save(work / "gray_rgb.png")       # the same pixels as RGB
    for name in ("gray", "gray_rgb"):
        assert main(["segment", f"{name}.png", "--engine", "classic", "--point", "290,150",
                     "--out", f"{name}-mask.png"]) == 0
    one = np.asarray(Image.open(work / "gray-mask.png"))
    three = np.asarray(Image.open(work / "gray_rgb-mask.png"))
    assert one.any() and np.array_equal(one, three)


def test_yolo_images_txt_may_not_lead_out_of_the_image_root(work, capsys):
    outside = work / "elsewhere"
    outside.mkdir()
    (outside / "secret.png").write_bytes((work / "images" / "a.png").read_bytes())
    (work / "images" / "link.png").symlink_to(outside / "secret.png")
    with Project.open(work / "annotations.sqlite", read_only=True) as p:
        yolo.write(p.export_dataset(), work / "y", p.image_root)
    listing = work / "y" / "images.txt"
    listing.write_text(listing.read_text() + f"{work / 'images' / 'link.png'}\n")
    before = dump_project(work / "annotations.sqlite")
    fails(capsys, "import", "yolo", "y", says=("images.txt", "'link.png'",
                                                "leads outside the image root"))
    assert dump_project(work / "annotations.sqlite") == before
    # the same rule COCO import already had
    doc = (work / "in.json").read_text().replace('"a.png"', '"link.png"')
    (work / "linked.json").write_text(doc)
    fails(capsys, "import", "coco", "linked.json", says=("link.png",
                                                         "leads outside the image root"))
