"""JPEG 2000 inputs (practice software exports): decoded and stored uncompressed; a 9-7
irreversible codestream is declared lossy in the DICOM written."""

from __future__ import annotations

import struct
from pathlib import Path

import imagecodecs
import numpy as np
from PIL import Image

from ..errors import CorruptImage, ImageTooLarge, UnreadableInput, UnsupportedFormat
from ..types import Orientation, PageFacts, Pixels, Probe
from .pixels import native

J2K_MODES = {
    "L": (1, "MONOCHROME2", 8),
    "I;16": (1, "MONOCHROME2", 16),
    "RGB": (3, "RGB", 8),
    "RGBA": (3, "RGB", 8),
    "LA": (1, "MONOCHROME2", 8),
}


def j2k_irreversible(data: bytes) -> bool:
    """True when the codestream's COD segment names the 9-7 irreversible wavelet (lossy)."""
    pos = data.find(b"\xff\x52")
    # Lcod(2) Scod(1) progression(1) layers(2) MCT(1) levels(1) cbw(1) cbh(1) style(1) transform(1)
    if pos < 0 or pos + 14 > len(data):
        return True  # unknown: claim lossy rather than lossless
    return data[pos + 13] == 0


def probe(path: Path, size: int) -> Probe:
    try:
        with Image.open(path) as im:
            mode, (w, h) = im.mode, im.size
    except Image.DecompressionBombError as exc:
        # Pillow's guard, from the SIZ header alone: a size claim, checked before any decode.
        raise ImageTooLarge(f"JPEG 2000 header claims too many pixels: {exc}", path=path) from exc
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as exc:
        raise CorruptImage(f"cannot parse JPEG 2000: {exc}", path=path) from exc
    if mode not in J2K_MODES:
        raise UnsupportedFormat(f"JPEG 2000 with mode {mode}", path=path)
    samples, photometric, bits = J2K_MODES[mode]
    return Probe(path, "jpeg2000", size, [PageFacts(h, w, samples, bits, photometric, "JPEG 2000")])


def _pixels(probe_: Probe, orientation: Orientation) -> Pixels:

    path = probe_.path
    try:
        data = path.read_bytes()
        arr = imagecodecs.jpeg2k_decode(data)
    except MemoryError:
        raise  # the worker's memory budget: image-too-large, not corrupt data
    except OSError as exc:
        raise UnreadableInput(f"cannot read JPEG 2000: {exc}", path=path) from exc
    except Exception as exc:
        raise CorruptImage(f"cannot decode JPEG 2000 data: {exc}", path=path) from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    derivation = ["JPEG 2000 decoded; stored uncompressed"]
    if arr.shape[2] in (2, 4):
        arr = arr[:, :, : arr.shape[2] - 1]
        derivation.append("alpha channel dropped")
    if arr.dtype not in (np.uint8, np.uint16):
        raise UnsupportedFormat(f"JPEG 2000 samples of type {arr.dtype}", path=path)
    return native(
        arr, orientation, derivation, lossy_source=j2k_irreversible(data), lossy_method="ISO_15444_1"
    )


def pixels(probe_: Probe, orientation: Orientation, photo: bool = False) -> list[Pixels]:
    """The one instance this input gives."""
    return [_pixels(probe_, orientation)]
