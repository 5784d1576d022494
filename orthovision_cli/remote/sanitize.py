"""Pixels only: what may leave the machine of an image.

JPEG keeps its compressed data byte for byte and loses every metadata segment (EXIF, XMP, IPTC,
comments, maker notes, thumbnails). PNG keeps only the chunks that define pixels and colour.
Everything else (TIFF, JPEG 2000, BMP, ...) is decoded and written as a fresh PNG, losslessly,
so no tag (ImageDescription, Artist, EXIF/GPS IFDs, XMP, maker notes) can travel along.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np

from ..errors import CorruptImage, UnsupportedFormat
from ..inputs.formats import sniff_bytes
from ..inputs.jpeg import strip_metadata

PNG_SIG = b"\x89PNG\r\n\x1a\n"
# Chunks that define the pixels and how to show them; the rest (tEXt, zTXt, iTXt, eXIf, tIME,
# pHYs, private chunks, APNG frames) is dropped.
PNG_KEEP = {
    b"IHDR",
    b"PLTE",
    b"IDAT",
    b"IEND",
    b"tRNS",
    b"gAMA",
    b"cHRM",
    b"sRGB",
    b"iCCP",
    b"sBIT",
}
PNG_LEVEL = 4  # zlib level: fast enough for 20 MP scans, most of the size gain


def sniff(data: bytes) -> str:
    """'jpeg', 'png', 'tiff' or 'other', by content (the readers' own recogniser)."""
    kind = sniff_bytes(data[:132])
    return kind if kind in ("jpeg", "png", "tiff") else "other"


def strip_png(data: bytes) -> bytes:
    """The PNG with only pixel-defining chunks (lossless; CRCs stay valid)."""
    out = [PNG_SIG]
    pos = len(PNG_SIG)
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        ctype = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise CorruptImage("truncated PNG chunk")
        if ctype in PNG_KEEP:
            out.append(data[pos:end])
        pos = end
        if ctype == b"IEND":
            break
    if len(out) < 3:
        raise CorruptImage("PNG without image data")
    return b"".join(out)


def encode_png(arr: np.ndarray) -> bytes:
    """A minimal lossless PNG of an 8/16-bit grey, grey+alpha, RGB or RGBA array."""
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        colour, channels = 0, 1
    elif arr.ndim == 3 and arr.shape[2] in (2, 3, 4):
        channels = arr.shape[2]
        colour = {2: 4, 3: 2, 4: 6}[channels]
    else:
        raise UnsupportedFormat(f"cannot send an image of shape {arr.shape}")
    if arr.dtype == np.uint8:
        depth, rows = 8, np.ascontiguousarray(arr)
    elif arr.dtype == np.uint16:
        depth, rows = 16, np.ascontiguousarray(arr.astype(">u2"))
    else:
        raise UnsupportedFormat(f"cannot send {arr.dtype} pixels as PNG")
    h, w = arr.shape[:2]
    raw = rows.reshape(h, -1).view(np.uint8)
    filtered = np.empty((h, raw.shape[1] + 1), np.uint8)
    filtered[:, 0] = 0  # filter type None per row
    filtered[:, 1:] = raw

    def chunk(ctype: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(ctype + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, 0)
    idat = zlib.compress(filtered.tobytes(), PNG_LEVEL)
    return PNG_SIG + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _tiff_pixels(data: bytes, page: int) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            p = tif.pages[page]
            if not isinstance(p, tifffile.TiffPage):
                raise CorruptImage(f"TIFF page {page} is not a full page")
            arr = p.asarray()
            photometric = getattr(p.photometric, "name", str(p.photometric))
            colormap = p.colormap
            planar_separate = getattr(p.planarconfig, "name", "") == "SEPARATE"
    except (IndexError, ValueError, tifffile.TiffFileError) as exc:
        raise CorruptImage(f"cannot decode TIFF: {exc}") from exc
    if planar_separate and arr.ndim == 3 and arr.shape[0] in (3, 4):
        arr = np.moveaxis(arr, 0, -1)
    if photometric == "MINISWHITE":
        arr = np.iinfo(arr.dtype).max - arr if arr.dtype.kind == "u" else arr.max() - arr
    elif photometric == "PALETTE" and colormap is not None:
        lut = np.asarray(colormap).T  # (entries, 3), 16-bit
        arr = lut[arr]
        arr = arr.astype(np.uint8 if int(lut.max()) < 256 else np.uint16)
    wide = arr.dtype.kind in "ui" and arr.dtype not in (np.uint8, np.uint16)
    if wide and arr.min() >= 0 and arr.max() <= 65535:
        arr = arr.astype(np.uint16)
    return arr


def _pillow_pixels(data: bytes) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            im: Image.Image = opened
            if im.mode in ("I;16", "I;16B", "I;16L"):
                return np.asarray(im, dtype=np.uint16)
            if im.mode == "I":
                a = np.asarray(im)
                if a.min() >= 0 and a.max() <= 65535:
                    return a.astype(np.uint16)
            if im.mode not in ("L", "LA", "RGB", "RGBA"):
                im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
            return np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UnsupportedFormat(f"cannot decode the image to send it: {exc}") from exc


def sanitize_bytes(data: bytes, page: int = 0) -> tuple[bytes, str]:
    """(pixels-only bytes, content type) for an image file's bytes."""
    kind = sniff(data)
    if kind == "jpeg":
        return strip_metadata(data), "image/jpeg"
    if kind == "png":
        return strip_png(data), "image/png"
    arr = _tiff_pixels(data, page) if kind == "tiff" else _pillow_pixels(data)
    return encode_png(arr), "image/png"


def pixels_only(image: Any) -> tuple[bytes, str]:
    """What to send for a SourceImage-like object (`read_bytes()`, optional `page`)."""
    try:
        return sanitize_bytes(image.read_bytes(), int(getattr(image, "page", 0) or 0))
    except (CorruptImage, UnsupportedFormat) as exc:
        if exc.path is None and getattr(image, "path", None) is not None:
            exc.path = image.path
        raise
