"""PNG inputs: Pillow reads the header, imagecodecs decodes the pixels bit-exact (16-bit kept,
alpha dropped, low bit depths scaled to 8 bits)."""

from __future__ import annotations

import struct
from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image

from ..errors import (
    CorruptImage,
    ImageTooLarge,
    ImplausibleSize,
    UnreadableInput,
    UnsupportedFormat,
)
from ..types import Orientation, PageFacts, Pixels, Probe
from . import exif as exif_mod
from .pixels import native

PNG_MODES = {
    "1": (1, "MONOCHROME2", 8),
    "L": (1, "MONOCHROME2", 8),
    "LA": (1, "MONOCHROME2", 8),
    "I;16": (1, "MONOCHROME2", 16),
    "I;16B": (1, "MONOCHROME2", 16),
    "I": (1, "MONOCHROME2", 16),
    "RGB": (3, "RGB", 8),
    "RGBA": (3, "RGB", 8),
    "P": (3, "RGB", 8),
    "PA": (3, "RGB", 8),
}


def probe(path: Path, size: int) -> Probe:
    try:
        with Image.open(path) as im:
            im_format_mode = im.mode
            w, h = im.size
            raw_dpi = im.info.get("dpi")
            bit_depth = _png_bit_depth(path)
            exif_facts = exif_mod.facts_from_exif(im.getexif())
    except Image.DecompressionBombError as exc:
        # Pillow's own guard, from the header alone: a size claim, not corrupt data.
        raise ImageTooLarge(f"PNG header claims too many pixels: {exc}", path=path) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptImage(f"cannot parse PNG: {exc}", path=path) from exc
    if im_format_mode not in PNG_MODES:
        raise UnsupportedFormat(f"PNG mode {im_format_mode}", path=path)
    samples, photometric, bits = PNG_MODES[im_format_mode]
    if bit_depth == 16:
        bits = 16
    _check_idat(path, w, h, bit_depth)
    dpi = (float(raw_dpi[0]), float(raw_dpi[1])) if raw_dpi and raw_dpi[0] > 1 else None
    page = PageFacts(h, w, samples, bits, photometric, "PNG")
    return Probe(path, "png", size, [page], exif_facts, dpi)


# Deflate gives at most 1032 bytes from one (measured 1028 on zeros).
MAX_DEFLATE_RATIO = 1100


def _check_idat(path: Path, width: int, height: int, bit_depth: int) -> None:
    """Refuse a header whose size the compressed data could never fill (chunk headers only)."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
    idat = 0
    try:
        with path.open("rb") as f:
            head = f.read(33)
            colour_type = head[25] if len(head) > 25 else 0
            f.seek(8)
            while True:
                chunk = f.read(8)
                if len(chunk) < 8:
                    break
                length, kind = struct.unpack(">I4s", chunk)
                if kind == b"IDAT":
                    idat += length
                elif kind == b"IEND":
                    break
                f.seek(length + 4, 1)
    except MemoryError:
        raise  # the worker's memory budget: image-too-large, not corrupt data
    except OSError as exc:
        raise UnreadableInput(f"cannot read PNG: {exc}", path=path) from exc
    row = (width * channels.get(colour_type, 4) * max(bit_depth, 1) + 7) // 8 + 1
    if row * height > max(idat, 1) * MAX_DEFLATE_RATIO + 4096:
        raise ImplausibleSize(
            f"PNG claims {width}x{height} pixels but holds {idat:,} bytes of image data "
            "(truncated or forged header)",
            rows=height,
            columns=width,
            path=path,
        )


def _png_bit_depth(path: Path) -> int:
    with path.open("rb") as f:
        head = f.read(33)
    return head[24] if len(head) >= 25 else 8


def _pixels(probe_: Probe, orientation: Orientation) -> Pixels:

    path = probe_.path
    try:
        arr = imagecodecs.png_decode(path.read_bytes())
    except MemoryError:
        raise  # the worker's memory budget: image-too-large, not corrupt data
    except OSError as exc:
        raise UnreadableInput(f"cannot read PNG: {exc}", path=path) from exc
    except Exception as exc:
        raise CorruptImage(f"cannot decode PNG data: {exc}", path=path) from exc
    facts = probe_.first
    derivation: list[str] = []
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] in (2, 4):
        arr = arr[:, :, : arr.shape[2] - 1]
        derivation.append("alpha channel dropped")
    if facts.photometric == "RGB" and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint16 and arr.dtype != np.uint8:
        arr = arr.astype(np.uint16 if facts.bits == 16 else np.uint8)
    if probe_.first.description == "PNG" and facts.bits == 8 and arr.dtype == np.uint8:
        # 1/2/4-bit greyscale PNGs decode to their raw small values; scale to the 8-bit range.
        depth = _png_bit_depth(path)
        if depth < 8 and facts.photometric == "MONOCHROME2":
            arr = (arr.astype(np.uint16) * (255 // ((1 << depth) - 1))).astype(np.uint8)
            derivation.append(f"{depth}-bit grey levels scaled to 8 bits")
    return native(arr, orientation, derivation)


def pixels(probe_: Probe, orientation: Orientation, photo: bool = False) -> list[Pixels]:
    """The one instance this input gives."""
    return [_pixels(probe_, orientation)]
