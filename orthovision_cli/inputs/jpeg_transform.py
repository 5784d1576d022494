"""Lossless JPEG re-coding in the DCT domain (what `jpegtran` does).

- progressive → baseline: the same quantised coefficients, re-entropy-coded sequentially;
- rotations and flips: blocks moved and coefficients transposed / sign-flipped, exact where the
  image is a whole number of MCUs along every flipped axis (`jpegtran -perfect`); otherwise
  `transform` returns None and the caller decodes and stores the pixels losslessly.

libjpeg-turbo's own transform (`turbojpeg.py`, the code `jpegtran` runs) does the work; where
libturbojpeg is missing, the coefficients are moved in numpy through jpeglib (3x slower).
"""

from __future__ import annotations

import mmap
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import CorruptImage, UnreadableInput
from ..types import Orientation
from . import turbojpeg
from .jpeg import JpegInfo, parse_header, strip_metadata, with_std_tables

_ICC = b"ICC_PROFILE\x00"  # APP2 payload start of an ICC profile chunk

# Primitive operations: H (mirror left-right), V (mirror top-bottom), T (transpose).
_OPS: dict[Orientation, tuple[str, ...]] = {}
for _rot, _ops in ((0, ()), (90, ("T", "H")), (180, ("H", "V")), (270, ("T", "V"))):
    _OPS[Orientation(_rot, False)] = _ops
    # Our flip (left-right) comes after the rotation.
    _flip = (*_ops, "H")
    # Cancel a double H (180 + flip == V only).
    if _flip.count("H") == 2:
        _flip = tuple(op for op in _flip if op != "H")
    _OPS[Orientation(_rot, True)] = _flip


def primitive_ops(orientation: Orientation) -> tuple[str, ...]:
    return _OPS[orientation]


def is_perfect(info: JpegInfo, orientation: Orientation) -> bool:
    """True when the transform moves only whole MCUs (no partial edge blocks)."""
    w, h = info.columns, info.rows
    mw, mh = info.mcu_size
    for op in primitive_ops(orientation):
        if op == "T":
            w, h, mw, mh = h, w, mh, mw
        elif (op == "H" and w % mw) or (op == "V" and h % mh):
            return False
    return True


@contextmanager
def _tmpdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="orthovision-jpeg-") as d:
        yield Path(d)


def _sign(n: int) -> np.ndarray:
    return np.where(np.arange(n) % 2 == 1, -1, 1).astype(np.int16)


def _apply(coefs: np.ndarray, op: str) -> np.ndarray:
    # coefs: (block rows, block cols, 8 (vertical frequency), 8 (horizontal frequency))
    if op == "H":
        return coefs[:, ::-1, :, :] * _sign(8)[None, None, None, :]
    if op == "V":
        return coefs[::-1, :, :, :] * _sign(8)[None, None, :, None]
    if op == "T":
        return coefs.transpose(1, 0, 3, 2)
    raise ValueError(op)


def _recode(source: Path, ops: tuple[str, ...]) -> bytes:
    import jpeglib

    # jpeglib is handed the stream without metadata segments: its marker reader crashes the
    # process (SIGSEGV) on some malformed ones, e.g. a zero-length COM right after SOI.
    try:
        clean = strip_metadata(source.read_bytes())
    except OSError as exc:
        raise UnreadableInput(f"cannot read the JPEG again: {exc}", path=source) from exc
    with _tmpdir() as d:
        src = d / "in.jpg"
        src.write_bytes(clean)
        try:
            jpeg = jpeglib.read_dct(str(src))
            jpeg.load()
        except Exception as exc:  # libjpeg reports damage as a generic error
            text = " ".join(str(exc).split())[:200]
            raise CorruptImage(f"libjpeg cannot read the DCT coefficients: {text}", path=source) from exc
        comps = ["Y", "Cb", "Cr", "K"][: jpeg.num_components] if jpeg.num_components != 1 else ["Y"]
        arrays = {c: np.asarray(getattr(jpeg, c)) for c in comps}
        qt = np.asarray(jpeg.qt).copy()
        samp = np.asarray(jpeg.samp_factor).copy()
        block_dims = np.asarray(jpeg.block_dims).copy()
        for op in ops:
            arrays = {c: _apply(a, op) for c, a in arrays.items()}
            if op == "T":
                qt = qt.transpose(0, 2, 1)
                samp = samp[:, ::-1]
                block_dims = block_dims[:, ::-1]
        for c, a in arrays.items():
            setattr(jpeg, c, np.ascontiguousarray(a))
        if "T" in ops:
            jpeg.height, jpeg.width = jpeg.width, jpeg.height
            # Without this, jpeglib re-reads the source's (untransposed) frame parameters.
            jpeg.content = None
        jpeg.qt = np.ascontiguousarray(qt)
        jpeg.samp_factor = np.ascontiguousarray(samp)
        jpeg.block_dims = np.ascontiguousarray(block_dims)
        jpeg.progressive_mode = False
        out = d / "out.jpg"
        jpeg.write_dct(str(out))
        data = out.read_bytes()
        return strip_metadata(data)


# Our corrections as tjTransform operations (rotation clockwise first, then a left-right mirror).
_TJ_OP: dict[Orientation, int] = {
    Orientation(0, False): turbojpeg.OP_NONE,
    Orientation(90, False): turbojpeg.OP_ROT90,
    Orientation(180, False): turbojpeg.OP_ROT180,
    Orientation(270, False): turbojpeg.OP_ROT270,
    Orientation(0, True): turbojpeg.OP_HFLIP,
    Orientation(90, True): turbojpeg.OP_TRANSPOSE,
    Orientation(180, True): turbojpeg.OP_VFLIP,
    Orientation(270, True): turbojpeg.OP_TRANSVERSE,
}


def _turbo(
    buf: bytes | mmap.mmap,
    info: JpegInfo,
    orientation: Orientation,
    path: Path | None,
) -> bytes:
    """tjTransform of the primary image only (MPF previews after its EOI are not passed), no
    APPn/COM copied (EXIF, XMP, maker notes stay behind), the source's ICC profile put back."""
    if len(buf) < info.eoi_end:  # shrunk since it was probed: never read past its end
        raise CorruptImage("the JPEG changed since it was read; run again", path=path)
    try:
        out = turbojpeg.transform(
            buf, info.eoi_end, _TJ_OP[orientation], turbojpeg.OPT_PERFECT | turbojpeg.OPT_COPYNONE
        )
    except turbojpeg.TurboJpegError as exc:
        raise CorruptImage(f"libjpeg-turbo cannot transform the JPEG: {exc}", path=path) from exc
    icc = b"".join(
        bytes(buf[seg.offset : seg.end])
        for seg in info.segments
        if seg.marker == 0xE2 and bytes(buf[seg.offset + 4 : seg.offset + 16]) == _ICC
    )
    return _insert_after_app(out, icc) if icc else out


def _insert_after_app(data: bytes, segments: bytes) -> bytes:
    """`segments` spliced in after SOI and the APP0/APP14 segments the encoder wrote."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF and 0xE0 <= data[pos + 1] <= 0xEF:
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return data[:pos] + segments + data[pos:]


def _map(source: Path) -> mmap.mmap:
    with source.open("rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)


def _via_turbo(source: Path, info: JpegInfo, orientation: Orientation) -> bytes:
    try:
        mm = _map(source)
    except (OSError, ValueError) as exc:
        raise UnreadableInput(f"cannot read the JPEG again: {exc}", path=source) from exc
    try:
        return _turbo(mm, info, orientation, source)
    finally:
        mm.close()


def to_baseline(source: Path, info: JpegInfo | None = None) -> bytes:
    """A progressive JPEG re-coded as baseline with identical coefficients (stripped of metadata)."""
    if info is not None and turbojpeg.available():
        return _via_turbo(source, info, Orientation())
    return _recode(source, ())


def transform(source: Path, info: JpegInfo, orientation: Orientation) -> bytes | None:
    """The JPEG turned/flipped losslessly, or None when that is not exact for this image."""
    if not is_perfect(info, orientation):
        return None
    if turbojpeg.available():
        return _via_turbo(source, info, orientation)
    return _recode(source, primitive_ops(orientation))


def transform_bytes(data: bytes, orientation: Orientation) -> bytes | None:
    """As `transform`, for JPEG bytes in memory."""
    info = parse_header(data)
    if not is_perfect(info, orientation):
        return None
    if turbojpeg.available():
        return _turbo(data, info, orientation, None)
    fd, name = tempfile.mkstemp(suffix=".jpg", prefix="orthovision-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return _recode(Path(name), primitive_ops(orientation))
    finally:
        os.unlink(name)


def std_tables_stream(info: JpegInfo, buf: bytes | mmap.mmap, path: Path) -> bytes:
    """The stream of a JPEG without Huffman tables with the standard ones put in, once its data
    is shown to decode with them without a single corrupt-data warning (a Motion-JPEG frame).
    A stream whose tables were lost otherwise would pass into DICOM as garbage: refused."""
    if not turbojpeg.available():
        raise CorruptImage(
            "JPEG without Huffman tables (a Motion-JPEG frame?): checking it needs libturbojpeg",
            path=path,
        )
    stream = with_std_tables(info, buf)
    try:
        turbojpeg.transform(stream, len(stream), turbojpeg.OP_NONE, turbojpeg.OPT_COPYNONE, strict=True)
    except turbojpeg.TurboJpegError as exc:
        raise CorruptImage(
            f"JPEG has no Huffman tables and its data does not decode with the standard ones ({exc})",
            path=path,
        ) from exc
    return stream
