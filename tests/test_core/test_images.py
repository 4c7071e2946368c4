"""annotator.core.images: formats, orientation, bit depths, huge and broken files."""
from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFile, ImageOps

from annotator.core.errors import ImageLoadError
from annotator.core.images import (
    IMAGE_EXTENSIONS, MAX_PIXELS, downscaled_size, list_images, load_image, read_image_info,
    scale_for,
)


def _rgb_pattern(w: int = 48, h: int = 32) -> np.ndarray:
    """Distinct, position-dependent colours so a wrong rotation or flip shows."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 5 % 256, y * 7 % 256, (x + 3 * y) % 256], axis=-1).astype(np.uint8)


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG whose header claims w x h (8-bit gray) but holds almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data)
                     + _chunk(b"IEND", b""))
    return path


def test_extensions_are_lower_case_with_dot():
    assert {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"} <= IMAGE_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("name, options", [
    ("o.png", {}), ("o.tif", {}), ("o.tiff", {"compression": "tiff_lzw"}),
    ("o.webp", {"lossless": True}), ("o.jpg", {"quality": 95}),
])
def test_every_exif_orientation_matches_exif_transpose(tmp_path, orientation, name, options):
    # Pillow's TIFF plugin orients during load() itself: this catches a double rotation
    path = tmp_path / name
    Image.fromarray(_rgb_pattern()).save(path, exif=_exif(orientation), **options)
    info = read_image_info(path)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    got = load_image(path)
    assert np.array_equal(got, expected)
    assert (info.height, info.width) == got.shape[:2]
    assert info.orientation == orientation
    swapped = orientation >= 5
    assert (info.width, info.height) == ((32, 48) if swapped else (48, 32))
    assert load_image(path, max_side=24).shape[:2] == ((24, 16) if swapped else (16, 24))


def test_jpeg_orientation_6_puts_the_top_left_corner_top_right(tmp_path):
    raw = np.zeros((40, 60, 3), np.uint8)   # stored 60 wide x 40 high
    raw[:10, :10] = (255, 0, 0)             # red block at the stored top-left
    path = tmp_path / "rot6.jpg"
    Image.fromarray(raw).save(path, exif=_exif(6), quality=95)
    info = read_image_info(path)
    assert (info.width, info.height, info.orientation, info.mode) == (40, 60, 6, "RGB")
    img = load_image(path)
    assert img.shape == (60, 40, 3)
    assert img[3, 36, 0] > 200 and img[3, 36, 1] < 60      # now at the top-right
    assert img[3, 3, 0] < 60 and img[56, 3, 0] < 60
    small = load_image(path, max_side=30)
    assert small.shape == (30, 20, 3)
    assert small[1, 18, 0] > 150 and small[1, 1, 0] < 80


def test_png_orientation_stored_after_the_pixel_data_is_seen_by_both_functions(tmp_path):
    # Pillow writes eXIf before IDAT; move it after IDAT, where only a full decode finds it.
    first = tmp_path / "early.png"
    Image.fromarray(_rgb_pattern()).save(first, exif=_exif(6))
    data = first.read_bytes()
    chunks, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunks.append((kind, data[pos:pos + 12 + length]))
        pos += 12 + length
    exif = [c for k, c in chunks if k == b"eXIf"]
    rest = [c for k, c in chunks if k not in (b"eXIf", b"IEND")]
    late = tmp_path / "late.png"
    late.write_bytes(data[:8] + b"".join(rest) + exif[0] + _chunk(b"IEND", b""))
    assert "exif" not in Image.open(late).info      # really not visible in the header
    info = read_image_info(late)
    assert (info.orientation, info.width, info.height) == (6, 32, 48)
    assert load_image(late).shape == (48, 32, 3)


def test_16_bit_grayscale_is_stretched_over_its_range_not_clipped(tmp_path):
    values = np.linspace(1000, 3000, 64 * 40).reshape(40, 64).astype(np.uint16)
    for name in ("deep.png", "deep.tif"):
        path = tmp_path / name
        Image.fromarray(values).save(path)
        assert read_image_info(path).mode.startswith("I;16")
        img = load_image(path)
        assert img.shape == (40, 64, 3) and img.dtype == np.uint8
        expected = np.round((values.astype(float) - 1000) * 255 / 2000)
        assert np.abs(img[..., 0].astype(float) - expected).max() <= 1
        assert img.min() == 0 and img.max() == 255
        assert np.array_equal(img[..., 0], img[..., 2])


def test_constant_16_bit_image_keeps_its_level(tmp_path):
    path = tmp_path / "flat.png"
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(path)
    assert (load_image(path) == 255).all()


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = _rgb_pattern()[..., 0]
    path = tmp_path / "gray.png"
    Image.fromarray(gray).save(path)
    img = load_image(path)
    assert img.shape == (32, 48, 3)
    assert all(np.array_equal(img[..., c], gray) for c in range(3))


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)     # opaque: kept
    rgba[0, 1] = (10, 20, 30, 0)       # transparent: white
    rgba[0, 2] = (0, 0, 0, 128)        # half: mid grey
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba).save(path)
    img = load_image(path)
    assert tuple(img[0, 0]) == (10, 20, 30)
    assert tuple(img[0, 1]) == (255, 255, 255)
    assert all(abs(int(v) - 127) <= 2 for v in img[0, 2])


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(path, quality=95)   # pure red ink
    assert read_image_info(path).mode == "CMYK"
    img = load_image(path)
    assert img.shape == (30, 40, 3)
    r, g, b = img[15, 20].astype(int)
    assert r > 230 and g < 25 and b < 25


def test_palette_png_and_palette_transparency(tmp_path):
    pal = Image.new("P", (6, 4), 0)
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    pal.putpixel((1, 1), 1)
    plain, see_through = tmp_path / "pal.png", tmp_path / "pal_t.png"
    pal.save(plain)
    pal.save(see_through, transparency=0)
    img = load_image(plain)
    assert tuple(img[0, 0]) == (255, 0, 0) and tuple(img[1, 1]) == (0, 0, 255)
    img = load_image(see_through)
    assert tuple(img[0, 0]) == (255, 255, 255) and tuple(img[1, 1]) == (0, 0, 255)


@pytest.mark.parametrize("name, options", [
    ("a.tif", {}), ("a.tiff", {"compression": "tiff_lzw"}), ("a.bmp", {}),
    ("a.webp", {"lossless": True}), ("a.png", {}),
])
def test_lossless_formats_round_trip_exactly(tmp_path, name, options):
    pixels = _rgb_pattern()
    path = tmp_path / name
    Image.fromarray(pixels).save(path, **options)
    assert np.array_equal(load_image(path), pixels)
    info = read_image_info(path)
    assert (info.width, info.height, info.orientation) == (48, 32, 1)


def test_non_ascii_paths(tmp_path):
    folder = tmp_path / "données_データ"
    folder.mkdir()
    path = folder / "café_画像.png"
    Image.fromarray(_rgb_pattern()).save(path)
    assert read_image_info(path).width == 48
    assert load_image(str(path)).shape == (32, 48, 3)
    assert list_images(tmp_path) == [path]


def test_info_hash_is_of_the_file_bytes(tmp_path):
    import hashlib
    path = tmp_path / "h.png"
    Image.fromarray(_rgb_pattern()).save(path)
    assert read_image_info(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_text("this is not a picture"), "not a JPEG, PNG"),
    (lambda p: None, "not found"),
    (lambda p: p.mkdir(), "folder"),
])
def test_unreadable_files_name_the_file(tmp_path, make, words):
    path = tmp_path / "bad_ñ.jpg"
    make(path)
    for call in (read_image_info, load_image):
        with pytest.raises(ImageLoadError) as err:
            call(path)
        assert str(path) in str(err.value) and words in str(err.value)


@pytest.mark.parametrize("name", ["cut.jpg", "cut.png"])
def test_truncated_files_fail_to_load_with_the_file_name(tmp_path, name):
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    whole = tmp_path / ("whole" + Path(name).suffix)
    Image.fromarray(noise).save(whole)
    path = tmp_path / name
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert read_image_info(path).width == 160       # the header is intact
    for max_side in (None, 64):
        with pytest.raises(ImageLoadError, match="truncated") as err:
            load_image(path, max_side=max_side)
        assert str(path) in str(err.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False     # nothing global was switched on


def test_huge_header_is_read_without_decoding_and_limit_restored(tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    path = _png_header_only(tmp_path / "scan.png", 20000, 15000)
    start = time.perf_counter()
    info = read_image_info(path)
    assert time.perf_counter() - start < 1.0
    assert (info.width, info.height, info.mode) == (20000, 15000, "L")
    assert Image.MAX_IMAGE_PIXELS == before


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_absurd_sizes_are_refused_with_the_size(tmp_path):
    path = _png_header_only(tmp_path / "bomb.png", 40000, 30000)
    assert 40000 * 30000 > MAX_PIXELS
    for call in (read_image_info, load_image):
        with pytest.raises(ImageLoadError, match="gigapixel") as err:
            call(path)
        assert str(path) in str(err.value) and "40000x30000" in str(err.value)


def test_large_jpeg_downscaled_for_engines_quickly(tmp_path):
    img = Image.new("L", (12000, 9000), 40)
    ImageDraw.Draw(img).rectangle([6000, 0, 11999, 4499], fill=220)   # top-right quarter
    path = tmp_path / "big.jpg"
    img.save(path, quality=80)
    del img
    start = time.perf_counter()
    info = read_image_info(path)
    small = load_image(path, max_side=1024)
    elapsed = time.perf_counter() - start
    assert (info.width, info.height) == (12000, 9000)        # coordinates stay full size
    assert small.shape == (768, 1024, 3)
    assert downscaled_size(info, 1024) == (1024, 768)
    assert elapsed < 2.0, f"draft/reduce path too slow: {elapsed:.2f}s"
    assert small[100, 900, 0] > 200 and small[100, 100, 0] < 60 and small[700, 900, 0] < 60
    s = scale_for(info, 1024)
    assert s == pytest.approx(1024 / 12000)
    assert 6000 * s == pytest.approx(512)                  # the edge of the bright quarter
    assert small[10, 508, 0] < 60 and small[10, 516, 0] > 200


def test_scale_helpers():
    assert scale_for((4000, 3000), 1024) == pytest.approx(0.256)
    assert scale_for((3000, 4000), 1024) == scale_for((4000, 3000), 1024)
    assert scale_for((800, 600), 1024) == 1.0 and scale_for((4000, 3000), None) == 1.0
    assert downscaled_size((4000, 3000), 1024) == (1024, 768)
    assert downscaled_size((5000, 7), 100) == (100, 1)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="max_side"):
            scale_for((10, 10), bad)
    with pytest.raises(ValueError):
        scale_for((0, 10), 5)


def test_max_side_on_non_jpeg_gives_exact_size(tmp_path):
    path = tmp_path / "wide.png"
    Image.fromarray(_rgb_pattern(300, 120)).save(path)
    assert load_image(path, max_side=100).shape == (40, 100, 3)
    assert load_image(path, max_side=1000).shape == (120, 300, 3)


def test_list_images_natural_order_hidden_and_non_images_skipped(tmp_path):
    names = ["img10.png", "img2.jpg", "IMG1.JPEG", "img1b.tif", ".hidden.png", "notes.txt",
             "sub/img3.png", "sub/img20.webp", ".git/x.png", "a10/z.bmp", "a9/z.bmp"]
    for name in names:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")   # only names matter here
    rel = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)]
    assert rel == ["a9/z.bmp", "a10/z.bmp", "IMG1.JPEG", "img1b.tif", "img2.jpg", "img10.png",
                   "sub/img3.png", "sub/img20.webp"]
    flat = [p.name for p in list_images(tmp_path, recursive=False)]
    assert flat == ["IMG1.JPEG", "img1b.tif", "img2.jpg", "img10.png"]
    with pytest.raises(ImageLoadError, match="not found"):
        list_images(tmp_path / "missing")
    with pytest.raises(ImageLoadError, match="not a folder"):
        list_images(tmp_path / "img10.png")
