"""Read an input: `probe` (cheap facts, no pixel decode) and `load_pixels` (what goes into DICOM).

Data flows one way: probe → (classify) → plan → load_pixels(probe, orientation) → encode/write.
Formats are recognised by content; each has its module (`read_jpeg`, `read_tiff`, `read_png`,
`read_j2k`) with a `probe` and a `pixels`, and `FORMATS` dispatches to them. JPEG pixel data is
passed through untouched where possible; everything else is decoded and kept bit-exact.

To add a format: a `read_X.py` with `probe(path, size) -> Probe` and
`pixels(probe, orientation, photo) -> list[Pixels]`, its magic bytes in `formats.sniff`, and a row
in `FORMATS`.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..defaults import DEFAULT_MAX_PIXELS
from ..errors import AlreadyDicom, CorruptImage, ImplausibleSize, UnreadableInput, UnsupportedFormat
from ..types import Orientation, Pixels, Probe
from . import read_j2k, read_jpeg, read_png, read_tiff
from .formats import SUPPORTED, sniff, sniff_bytes
from .pixels import check_size

__all__ = ["DEFAULT_MAX_PIXELS", "FORMATS", "Reader", "load_pixels", "probe"]


@dataclass(frozen=True, slots=True)
class Reader:
    probe: Callable[[Path, int], Probe]
    pixels: Callable[[Probe, Orientation, bool], list[Pixels]]


FORMATS: dict[str, Reader] = {
    "jpeg": Reader(read_jpeg.probe, read_jpeg.pixels),
    "tiff": Reader(read_tiff.probe, read_tiff.pixels),
    "png": Reader(read_png.probe, read_png.pixels),
    "jpeg2000": Reader(read_j2k.probe, read_j2k.pixels),
}


def probe(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS, *, data: mmap.mmap | None = None) -> Probe:
    """`data`: the file already mapped by the caller (who hashed it), so that a JPEG's header
    and EOI scan read the same pages instead of mapping the file again."""
    fmt = sniff_bytes(data[:132]) if data is not None else sniff(path)
    if fmt == "empty":
        raise CorruptImage("file is empty (0 bytes)", path=path)
    if fmt == "dicom":
        raise AlreadyDicom("already DICOM: nothing to convert (send it as it is)", path=path)
    if fmt not in SUPPORTED or fmt not in FORMATS:
        what = "unrecognised content" if fmt == "unknown" else f"{fmt} is not supported"
        raise UnsupportedFormat(f"{what}; expected JPEG, TIFF, PNG or JPEG 2000", path=path)
    try:
        st = path.stat()
    except OSError as exc:
        raise UnreadableInput(f"cannot stat file: {exc.strerror or exc}", path=path) from exc
    try:
        if fmt == "jpeg" and data is not None:
            result = read_jpeg.probe(path, st.st_size, data)
        else:
            result = FORMATS[fmt].probe(path, st.st_size)
    except ImplausibleSize as exc:
        # The user's own limit is the first thing to name; then the data that is not there.
        check_size(path, exc.rows, exc.columns, 1, max_pixels)
        raise
    result.mtime = st.st_mtime
    for page in result.pages:
        check_size(path, page.rows, page.columns, page.samples, max_pixels)
    return result


def kept_probe(probe_: Probe) -> Probe:
    """What a batch keeps of a probe once its file is analysed: planning, the state and the
    memory estimate need no JPEG segment tables (`load_pixels` reads them again)."""
    return read_jpeg.without_segments(probe_) if probe_.format == "jpeg" else probe_


def load_pixels(
    probe_: Probe, orientation: Orientation | None = None, *, photo: bool = False
) -> list[Pixels]:
    """The pixels to store, one entry per output instance (multi-page TIFFs may give several).
    `photo`: the target is a VL Photographic Image (which admits no RGB-coded JPEG)."""
    return FORMATS[probe_.format].pixels(probe_, orientation or Orientation(), photo)
