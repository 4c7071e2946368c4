"""Image files to pixels: the one place bytes meet an image decoder; header info, EXIF
orientation, odd pixel modes, huge images.

Choices (the brief asked for them to be written down):
- One door: every image the product decodes (photos, LabelMe's embedded masks, PNG label
  masks) goes through ``open_image``, which gives Pillow an allow-list of formats:
  PNG, JPEG (phones' MPO included), TIFF, BMP (and its DIB variant) and WebP. Nothing else
  is even identified: EPS/PostScript (Pillow hands it to Ghostscript, which runs the
  file's program), PDF, GIF, ICO, PSD, SVG... are refused with one line naming the file.
  A test greps the source tree so that no other call to Pillow's opener creeps in.
- Coordinates are always those of the full-resolution image *after* EXIF orientation
  (what every viewer shows). ``read_image_info`` and ``load_image`` take the orientation
  from the same place (``_orientation``), so they can never disagree. Pillow's TIFF plugin
  applies the orientation itself while loading; that is detected, not done twice.
- 16-bit and 32-bit single-channel images (PIL modes I;16*, I, F) are stretched linearly
  from their actual minimum..maximum to 0..255: such data (microscopy, medical, depth) rarely
  fills 0..65535 and would look black after a plain divide-by-257. Nothing is clipped. A
  constant image keeps its absolute level. Pillow itself reduces 16-bit *colour* PNG/TIFF to
  their high byte (an absolute scale) when opening them.
- Transparency (RGBA, LA, PA, palette or tRNS transparency) is composited on white, as a
  viewer shows a transparent PNG on a page; the alpha itself is not kept.
- CMYK, palette, 1-bit, YCbCr and grayscale become RGB; grayscale stays one channel until
  the last step so huge grayscale images cost a third of the memory while being resized.
- Size limit: Pillow refuses images above 2 x ``Image.MAX_IMAGE_PIXELS`` (179 MP by
  default) as decompression bombs, which would refuse a 20000x15000 (300 MP) scan. Around
  Pillow's open only, under a lock, the limit is raised to ``MAX_PIXELS`` (1 gigapixel) and
  then restored, so the rest of the program keeps Pillow's default; anything above
  ``MAX_PIXELS`` is refused here with a message that gives the size. (Another thread that
  opens images with Pillow during that instant sees the raised limit.)
- ``max_side`` gives engines a smaller copy: JPEG is decoded at 1/2, 1/4 or 1/8 scale in the
  DCT domain (``draft``), then Pillow ``reduce`` + Lanczos (``resize(reducing_gap=...)``)
  brings it to exactly ``downscaled_size``. Other formats must be decoded in full first.
- Memory: Pillow keeps RGB at 4 bytes a pixel. A full-size load copies it into the numpy
  result a stripe at a time (never a whole second copy plus ``tobytes``'s), and the EXIF
  rotation runs on the numpy copy after Pillow's is freed: at most two full-size copies at
  any moment (docs/benchmarks.md has the measured peak for a 20000x20000 image).
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

from annotator.core.errors import ImageLoadError

__all__ = [
    "IMAGE_EXTENSIONS", "ALLOWED_FORMATS", "MAX_PIXELS", "ImageInfo", "ScaledImage",
    "open_image", "read_image_info", "load_image", "load_scaled_image", "scale_for",
    "downscaled_size", "list_images", "DECODE_ERRORS", "outside_root_problem",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".bmp", ".dib", ".webp"})
# The Pillow plugins allowed to identify and decode anything ("JPEG" also opens phones'
# multi-picture MPO files). Leaving out the rest keeps e.g. EPS, which runs Ghostscript.
ALLOWED_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "DIB", "WEBP")
_ALLOWED_WORDS = "JPEG, PNG, TIFF, BMP or WebP"
MAX_PIXELS = 1_000_000_000
# Formats we refuse, told apart by their first bytes so the message can say what it was.
_REFUSED_SIGNATURES = (
    (b"%!PS", "an EPS/PostScript file"), (b"\xc5\xd0\xd3\xc6", "an EPS/PostScript file"),
    (b"%PDF", "a PDF file"), (b"GIF8", "a GIF image"), (b"8BPS", "a Photoshop (PSD) file"),
    (b"\0\0\1\0", "an ICO icon"), (b"<?xml", "XML (SVG?) text"), (b"<svg", "an SVG drawing"),
)
_STRIPE_BYTES = 4 << 20   # Pillow -> numpy copy of a full-size load, a stripe at a time

_LIMIT_LOCK = threading.Lock()
# EXIF orientation -> the numpy view that displays it (as ImageOps.exif_transpose does);
# views, so the one copy made of them happens after Pillow's pixels are gone.
_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1], 8: lambda a: np.rot90(a, 1),
}
_HIGH_DEPTH_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
# Errors Pillow raises for damaged or truncated data (it has no single exception type).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError)


@dataclass(frozen=True)
class ImageInfo:
    path: Path
    width: int          # after EXIF orientation
    height: int         # after EXIF orientation
    orientation: int    # EXIF orientation value applied (1 = none)
    mode: str           # PIL mode of the file ("RGB", "I;16", "CMYK", ...)
    sha256: str         # hex digest of the file bytes


def _check_file(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: file not found") from None
    except OSError as e:
        raise ImageLoadError(f"{path}: cannot access the file ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageLoadError(f"{path}: is a folder, not an image file")
    if st.st_size == 0:
        raise ImageLoadError(f"{path}: empty file (0 bytes), not an image")


def _what_it_is(head: bytes) -> str:
    for signature, words in _REFUSED_SIGNATURES:
        if head.startswith(signature):
            return words
    return "unknown format or damaged header"


def open_image(source: Path | bytes, name: str | os.PathLike[str],
               formats: tuple[str, ...] = ALLOWED_FORMATS) -> Image.Image:
    """The one door to Pillow's decoders: `source` (a file or its bytes) opened lazily
    (header only) by the allow-listed plugins `formats` (a subset of ALLOWED_FORMATS),
    under the raised pixel limit. Raises ImageLoadError starting with `name` for anything
    refused: another format, a damaged header, more than MAX_PIXELS, no pixels."""
    if not set(formats) <= set(ALLOWED_FORMATS):
        raise ValueError(f"formats must be among {ALLOWED_FORMATS}, got {formats!r}")
    fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        with _LIMIT_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            if saved is not None and saved < MAX_PIXELS:
                Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            try:
                img = Image.open(fp, formats=formats)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except UnidentifiedImageError:
        head = bytes(source[:16]) if isinstance(source, (bytes, bytearray)) else _head(source)
        wanted = _ALLOWED_WORDS if formats == ALLOWED_FORMATS else " or ".join(formats)
        raise ImageLoadError(f"{name}: not a {wanted} image ({_what_it_is(head)})") from None
    except Image.DecompressionBombError:
        raise ImageLoadError(f"{name}: image is larger than {MAX_PIXELS / 1e9:g} gigapixel, "
                             "refused") from None
    except DECODE_ERRORS as e:
        raise ImageLoadError(f"{name}: cannot read the image header ({e})") from None
    w, h = img.size
    if w <= 0 or h <= 0 or w * h > MAX_PIXELS:
        img.close()
        if w <= 0 or h <= 0:
            raise ImageLoadError(f"{name}: image has no pixels ({w}x{h})")
        raise ImageLoadError(f"{name}: {w}x{h} is {w * h / 1e9:.2f} gigapixels, above the "
                             f"{MAX_PIXELS / 1e9:g}-gigapixel limit")
    return img


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(16)
    except OSError:
        return b""


@contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """An image file opened lazily (header only); refuse what we cannot use."""
    _check_file(path)
    with open_image(path, path) as img:
        yield img


_PNG_ORIENTATION_CHUNKS = {b"eXIf": None, b"tEXt": b"Raw profile type exif",
                           b"zTXt": b"Raw profile type exif", b"iTXt": b"XML:com.adobe.xmp"}


def _png_orientation_after_data(path: Path) -> bool:
    """Whether a PNG keeps EXIF/XMP (which may hold an orientation) after its pixel data.

    Pillow reads such chunks only by decoding the whole image; we walk the chunk list
    (seeks only) so that only those rare files pay for a full decode in read_image_info.
    """
    try:
        with open(path, "rb") as f:
            f.seek(8)
            seen_data = False
            while True:
                head = f.read(8)
                if len(head) < 8:
                    return False
                length, kind = struct.unpack(">I4s", head)
                if kind == b"IEND":
                    return False
                if kind == b"IDAT":
                    seen_data = True
                elif seen_data and kind in _PNG_ORIENTATION_CHUNKS:
                    key = _PNG_ORIENTATION_CHUNKS[kind]
                    if key is None or f.read(min(length, 80)).split(b"\0")[0] == key:
                        return True
                    f.seek(-min(length, 80), os.SEEK_CUR)
                f.seek(length + 4, os.SEEK_CUR)
    except OSError:
        return False


def _orientation(img: Image.Image, path: Path) -> int:
    """EXIF orientation (1..8) from the same source ImageOps.exif_transpose reads."""
    try:
        if img.format == "PNG" and not _png_orientation_after_data(path):
            exif = Image.Image.getexif(img)   # PngImageFile.getexif would decode everything
        else:
            exif = img.getexif()
        value = int(exif.get(0x0112, 1))
    except (*DECODE_ERRORS, KeyError, TypeError):
        return 1   # unreadable EXIF: show the pixels as stored, here and in load_image alike
    return value if 1 <= value <= 8 else 1


def _oriented_size(img: Image.Image, orientation: int) -> tuple[int, int]:
    """Displayed (width, height). Pillow's TIFF plugin already reports the oriented size
    (and transposes during load); every other plugin reports the stored size."""
    w, h = img.size
    stored = (w, h)
    if img.format == "TIFF":
        stored = (int(img.tag_v2.get(256, w)), int(img.tag_v2.get(257, h)))  # ImageWidth/Length
    return (h, w) if orientation >= 5 and (w, h) == stored else (w, h)


def _orientation_left_after_load(img: Image.Image, orientation: int) -> int:
    """The orientation still to apply once loaded: 1 when the plugin already applied it
    (Pillow's TIFF plugin does, and deletes the tag as it goes)."""
    if orientation == 1:
        return 1
    try:
        still = img.getexif().get(0x0112, 1)
    except (*DECODE_ERRORS, KeyError, TypeError):
        return orientation
    return orientation if still == orientation else 1


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as e:
        raise ImageLoadError(f"{path}: cannot read the file ({e.strerror or e})") from None
    return digest.hexdigest()


def read_image_info(path: str | os.PathLike[str]) -> ImageInfo:
    """Size (after EXIF orientation), orientation, mode and content hash, without decoding.

    Only the header is parsed, so a truncated file is detected by ``load_image``, not here.
    """
    p = Path(path)
    with _opened(p) as img:
        orientation = _orientation(img, p)
        mode, (w, h) = img.mode, _oriented_size(img, orientation)
    return ImageInfo(path=p, width=w, height=h, orientation=orientation, mode=mode,
                     sha256=_sha256(p))


def _size_of(info_or_size: ImageInfo | tuple[int, int]) -> tuple[int, int]:
    if isinstance(info_or_size, ImageInfo):
        return info_or_size.width, info_or_size.height
    try:
        w, h = info_or_size
        w, h = int(w), int(h)
    except (TypeError, ValueError):
        raise ValueError(f"expected an ImageInfo or (width, height), got {info_or_size!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"image size must be positive, got {w}x{h}")
    return w, h


def _check_max_side(max_side: int | None) -> None:
    if max_side is not None and (isinstance(max_side, bool) or not isinstance(max_side, int)
                                 or max_side <= 0):
        raise ValueError(f"max_side must be a positive integer or None, got {max_side!r}")


def scale_for(info_or_size: ImageInfo | tuple[int, int], max_side: int | None) -> float:
    """Factor from full-resolution to engine pixels (<= 1): engine = full * scale.

    Map an engine coordinate back with ``full = engine / scale``. Depends only on the long
    side, so (width, height) and (height, width) give the same answer.
    """
    _check_max_side(max_side)
    long_side = max(_size_of(info_or_size))
    return 1.0 if max_side is None or long_side <= max_side else max_side / long_side


def downscaled_size(info_or_size: ImageInfo | tuple[int, int],
                    max_side: int | None) -> tuple[int, int]:
    """(width, height) of what ``load_image(path, max_side)`` returns for this image."""
    w, h = _size_of(info_or_size)
    s = scale_for((w, h), max_side)
    if s == 1.0:
        return w, h
    return max(1, round(w * s)), max(1, round(h * s))


def _stretch_to_uint8(a: np.ndarray) -> np.ndarray:
    """Linear min..max -> 0..255 for high-bit-depth single-channel data (see module note)."""
    finite = np.isfinite(a) if a.dtype.kind == "f" else None
    if finite is not None and not finite.all():
        a = np.where(finite, a, np.nan)
        lo, hi = (float(np.nanmin(a)), float(np.nanmax(a))) if finite.any() else (0.0, 0.0)
    else:
        lo, hi = float(a.min()), float(a.max())
    if hi <= lo:   # constant image: keep its absolute level
        top = 1.0 if a.dtype.kind == "f" else 65535.0
        level = int(round(min(max(lo / top, 0.0), 1.0) * 255))
        return np.full(a.shape, level, dtype=np.uint8)
    if a.dtype == np.uint16 or a.dtype == np.dtype(">u2"):
        lut = np.round((np.arange(int(hi) - int(lo) + 1) * 255.0) / (hi - lo)).astype(np.uint8)
        return lut[a.astype(np.uint16) - np.uint16(lo)]
    out = (a.astype(np.float32) - lo) * np.float32(255.0 / (hi - lo)) + np.float32(0.5)
    return np.nan_to_num(out, nan=0.0).astype(np.uint8)


def _to_8bit(img: Image.Image) -> Image.Image:
    """An "L" or "RGB" image (see module note for each mode)."""
    mode = img.mode
    if mode in _HIGH_DEPTH_MODES:
        return Image.fromarray(_stretch_to_uint8(np.asarray(img)))
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img if mode == "RGBA" else img.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba.getchannel("A"))
        return white
    if mode in ("L", "RGB"):
        return img
    return img.convert("L" if mode == "1" else "RGB")


def _rgb_array(img: Image.Image) -> np.ndarray:
    """H x W x 3 uint8 of a loaded image, converted and copied a stripe at a time: the
    only full-size allocation is the result (np.asarray of the whole image would hold a
    ``tobytes`` copy and, read-only, need a third)."""
    if img.mode in _HIGH_DEPTH_MODES:       # needs the whole image's range; one channel
        gray = _stretch_to_uint8(np.asarray(img))
        return np.repeat(gray[..., None], 3, axis=2)
    w, h = img.size
    out = np.empty((h, w, 3), np.uint8)
    rows = max(1, _STRIPE_BYTES // (4 * w))
    for top in range(0, h, rows):
        stripe = _to_8bit(img.crop((0, top, w, min(h, top + rows))))
        out[top:top + stripe.height] = np.asarray(
            stripe if stripe.mode == "RGB" else stripe.convert("RGB"))
    return out


def _reduced(img: Image.Image, target: tuple[int, int]) -> Image.Image:
    """A loaded image brought to `target`, in "L" or "RGB". Plain L/RGB are reduced
    before anything else (no full-size copy); other modes are converted first."""
    if img.mode not in ("L", "RGB") or "transparency" in img.info:
        img = _to_8bit(img)
    if img.size != target:
        img = img.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return img


def _decode(p: Path, max_side: int | None) -> tuple[np.ndarray, int, tuple[int, int]]:
    """(pixels as stored, the orientation still to apply, (height, width) of the full
    image as displayed). Pillow's copy is freed when this returns."""
    with _opened(p) as img:
        orientation = _orientation(img, p)
        full_w, full_h = _oriented_size(img, orientation)
        target = downscaled_size(img.size, max_side)   # in the frame load() will produce
        try:
            if target != img.size:
                img.draft(None, target)   # JPEG: DCT-domain 1/2..1/8, never below target
                img.load()
                arr = _rgb_array(_reduced(img, target))
            else:
                img.load()
                arr = _rgb_array(img)
        except MemoryError:
            raise ImageLoadError(f"{p}: not enough memory to decode the "
                                 f"{img.width}x{img.height} image") from None
        except DECODE_ERRORS as e:
            raise ImageLoadError(f"{p}: cannot decode the image, the file is truncated or "
                                 f"damaged ({e})") from None
        left = _orientation_left_after_load(img, orientation)
        img.close()     # frees Pillow's pixels now, before the rotation copies ours
    return arr, left, (full_h, full_w)


@dataclass(frozen=True)
class ScaledImage:
    pixels: np.ndarray              # H x W x 3 uint8 RGB, long side <= the max_side asked
    full_size: tuple[int, int]      # (height, width) of the full image, after orientation


def load_scaled_image(path: str | os.PathLike[str], max_side: int | None) -> ScaledImage:
    """``load_image(path, max_side)`` together with the full image's size, from one
    decode (what engines need: a small copy, and the frame to answer in)."""
    _check_max_side(max_side)
    arr, left, full_size = _decode(Path(path), max_side)
    if left in _ORIENT:
        arr = np.ascontiguousarray(_ORIENT[left](arr))
    return ScaledImage(arr, full_size)


def load_image(path: str | os.PathLike[str], max_side: int | None = None) -> np.ndarray:
    """H x W x 3 uint8 RGB pixels, EXIF orientation applied.

    With `max_side`, the long side is scaled down to at most `max_side` (for engines):
    the result is ``downscaled_size(info, max_side)``; ``scale_for`` maps coordinates back.
    Raises ImageLoadError naming the file when it is missing, empty, not an image,
    truncated or damaged.
    """
    return load_scaled_image(path, max_side).pixels


def outside_root_problem(file: str | os.PathLike[str],
                         root: str | os.PathLike[str]) -> str | None:
    """Why `file` may not be an image of the image root `root`: it resolves (symlinks
    followed) to a place outside it. None when it stays inside. The one rule for every
    way in (COCO, LabelMe, YOLO and PNG imports, a folder opened in the window)."""
    real_root = Path(root).resolve()
    try:
        Path(file).resolve().relative_to(real_root)
    except ValueError:
        return f"image file {file} leads outside the image root {real_root}"
    except (OSError, RuntimeError) as exc:    # a symlink loop
        return f"image file {file} cannot be resolved ({exc})"
    return None


def _natural_key(text: str) -> list[str | int]:
    # re.split with a group alternates text, number, text...: comparisons stay str vs str
    parts = re.split(r"(\d+)", text.casefold())
    return [int(s) if i % 2 else s for i, s in enumerate(parts)]


def _hidden(entry: os.DirEntry[str]) -> bool:
    if entry.name.startswith("."):
        return True
    try:   # Windows' hidden attribute; absent elsewhere
        return bool(getattr(entry.stat(), "st_file_attributes", 0) & 2)
    except OSError:
        return True


def list_images(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Image files under `folder` by extension, hidden files/folders skipped, sorted
    naturally (img2 before img10; folder by folder, case-insensitive)."""
    root = Path(folder)
    if not root.exists():
        raise ImageLoadError(f"{root}: folder not found")
    if not root.is_dir():
        raise ImageLoadError(f"{root}: not a folder")
    found: list[Path] = []
    pending = [root]
    while pending:
        current = pending.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue   # an unreadable subfolder is skipped, not fatal
        for entry in entries:
            if _hidden(entry):
                continue
            if entry.is_dir(follow_symlinks=False):
                if recursive:
                    pending.append(Path(entry.path))
            elif Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS and entry.is_file():
                found.append(Path(entry.path))

    def key(p: Path) -> tuple[list[list[str | int]], str]:
        rel = p.relative_to(root)
        return [_natural_key(part) for part in rel.parts], str(rel)

    return sorted(found, key=key)
