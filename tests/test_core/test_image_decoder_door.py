"""No code from a data file runs: every image decode goes through
annotator.core.images.open_image, whose allow-list keeps EPS (Ghostscript) and the other
formats out, for image files and for LabelMe's embedded masks alike."""
from __future__ import annotations

import ast
import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from annotator.core.errors import FormatError, ImageLoadError
from annotator.core.formats import labelme
from annotator.core.images import ALLOWED_FORMATS, load_image, open_image, read_image_info

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("annotator", "engines", "training", "bench", "scripts")
# Ways to turn bytes into pixels other than the one door (Pillow's opener is allowed once)
OTHER_DECODERS = re.compile(r"\bimread\b|\bimdecode\b|QImageReader|loadFromData|"
                            r"from PIL\.Image import|torchvision\.io|imageio|skimage\.io")
# A PostScript program: what Pillow would hand to Ghostscript to render.
TINY_EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 4 4\n"
            b"newpath 0 0 moveto 4 0 lineto 4 4 lineto closepath fill\nshowpage\n%%EOF\n")


def _sources() -> list[Path]:
    return sorted(p for top in PRODUCT for p in (REPO / top).rglob("*.py"))


def _span_of(path: Path, function: str) -> range:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return range(node.lineno, node.end_lineno + 1)
    raise AssertionError(f"{path}: no function {function}")


def test_pillow_is_opened_in_exactly_one_function():
    door = REPO / "annotator" / "core" / "images.py"
    allowed = _span_of(door, "open_image")
    opens, others = [], []
    for path in _sources():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            where = f"{path.relative_to(REPO)}:{n}: {line.strip()}"
            if "Image.open" in line:
                opens.append((path, n, where))
            if OTHER_DECODERS.search(line):
                others.append(where)
    assert [w for p, n, w in opens if not (p == door and n in allowed)] == []
    assert len(opens) == 1, [w for _, _, w in opens]
    assert others == []


@pytest.fixture()
def no_ghostscript(monkeypatch):
    """Records any use of Pillow's EPS plugin (identifying the file, or Ghostscript)."""
    used = []

    def identify(self, *a, **k):
        used.append("EpsImageFile._open")
        raise SyntaxError("EPS plugin must not be used")

    def ghostscript(*a, **k):
        used.append("Ghostscript")
        raise OSError("Ghostscript must not run")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", identify)
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    return used


def test_labelme_mask_holding_eps_is_refused_without_ghostscript(tmp_path, no_ghostscript):
    Image.new("RGB", (16, 12)).save(tmp_path / "a.png")
    shape = {"label": "x", "points": [[1, 1], [4, 4]], "group_id": None, "shape_type": "mask",
             "flags": {}, "description": "", "mask": base64.b64encode(TINY_EPS).decode()}
    doc = {"version": "5.5.0", "flags": {}, "shapes": [shape], "imagePath": "a.png",
           "imageData": None, "imageHeight": 12, "imageWidth": 16}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    with pytest.raises(FormatError) as info:
        labelme.read(tmp_path / "a.json", tmp_path)
    assert no_ghostscript == []
    message = str(info.value)
    assert "shapes[0]" in message and "EPS/PostScript" in message, message
    assert str(tmp_path / "a.json") in message and "\n" not in message


@pytest.mark.parametrize("call", [read_image_info, load_image])
def test_image_file_holding_eps_is_refused_without_ghostscript(tmp_path, no_ghostscript, call):
    path = tmp_path / "photo.jpg"
    path.write_bytes(TINY_EPS)
    with pytest.raises(ImageLoadError) as info:
        call(path)
    assert no_ghostscript == []
    assert str(path) in str(info.value) and "EPS/PostScript" in str(info.value)


@pytest.mark.parametrize("kind, words", [
    ("GIF", "a GIF image"), ("PDF", "a PDF file"), ("ICO", "an ICO icon"),
])
def test_formats_outside_the_allow_list_are_refused(tmp_path, kind, words):
    path = tmp_path / f"x.{kind.lower()}"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path, format=kind)
    with pytest.raises(ImageLoadError, match=words):
        read_image_info(path)


def test_the_allow_list_is_the_documented_one():
    assert set(ALLOWED_FORMATS) == {"PNG", "JPEG", "TIFF", "BMP", "DIB", "WEBP"}
    with pytest.raises(ValueError, match="formats"):
        open_image(b"", "x", formats=("EPS",))


def test_png_masks_accept_only_png(tmp_path):
    from annotator.core.formats.png_masks import _decode_png
    jpeg = tmp_path / "m.jpg"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(jpeg)
    problem = _decode_png(jpeg.read_bytes(), jpeg)
    assert isinstance(problem, str) and "not a PNG image" in problem
