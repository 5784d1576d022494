"""JPEG inputs: the probe reads the header segments only; the pixels pass through byte for byte
(progressive re-coded as baseline, rotations in the DCT domain where exact) or are decoded where
the target IOD admits no such JPEG."""

from __future__ import annotations

import io
import mmap
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

from ..errors import CorruptEntropyData, ImageTooLarge, InputError, UnsupportedFormat
from ..types import JpegInfo, JpegPixels, Orientation, PageFacts, Pixels, Probe
from . import exif as exif_mod
from .jpeg import kept_ranges, parse_header
from .jpeg_transform import std_tables_stream, to_baseline, transform
from .pixels import decode_error, describe, map_file, native
from .turbojpeg import decode_warning

JPEG_PHOTOMETRIC = {"GRAY": "MONOCHROME2", "RGB": "RGB", "CMYK": "CMYK", "YCCK": "CMYK"}


def probe(path: Path, size: int, data: mmap.mmap | None = None) -> Probe:
    if data is not None:  # mapped (and hashed) by the caller: the same pages, read once
        info = parse_header(data, path)
    else:
        mm = map_file(path)
        try:
            info = parse_header(mm, path)
        finally:
            mm.close()
    if info.color_space == "YCbCr":
        # YBR_FULL_422 for every YCbCr stream, subsampled or not: the VL Photographic IOD
        # enumerates no other YCbCr value for JPEG Baseline (PS3.3 C.7.6.3.1.2, C.8.12.1).
        photometric = "YBR_FULL_422"
    else:
        photometric = JPEG_PHOTOMETRIC.get(info.color_space, "")
    if not photometric:
        raise UnsupportedFormat(f"JPEG with {info.samples} components", path=path)
    if info.precision != 8:
        raise UnsupportedFormat(f"{info.precision}-bit JPEG is not supported yet", path=path)
    if info.process not in ("baseline", "extended", "progressive"):
        raise UnsupportedFormat(f"{info.process} JPEG is not supported yet", path=path)
    dpi = None
    facts = exif_mod.facts_from_bytes(info.exif)
    page = PageFacts(info.rows, info.columns, info.samples, 8, photometric, f"JPEG {info.process}")
    # Only the header facts are kept: the EXIF payload stays out of the pickled probe.
    info.exif = None
    return Probe(path, "jpeg", size, [page], facts, dpi, info.icc_profile, info)


def without_segments(probe_: Probe) -> Probe:
    """The probe as a batch's coordinator keeps it (issue 25): the JPEG's segment tables left
    out (over a third of a probe's memory, and not needed to plan, to estimate memory or to
    store the plan); the writer reads the header again (`_full_header`)."""
    info = probe_.jpeg
    if info is None or not (info.segments or info.late_segments):
        return probe_
    return replace(probe_, jpeg=replace(info, segments=[], late_segments=[]))


def _full_header(probe_: Probe) -> JpegInfo:
    """The probe's header facts with their segment tables, read again if they were left out.
    The caller checked that the file is still the one probed (size and modification time)."""
    info = probe_.jpeg
    assert info is not None
    if info.segments:  # every JPEG has segments before its first scan (SOF, DQT at least)
        return info
    mm = map_file(probe_.path)
    try:
        full = parse_header(mm, probe_.path)
    finally:
        mm.close()
    full.exif = None
    if (full.rows, full.columns, full.process, full.components) != (
        info.rows,
        info.columns,
        info.process,
        info.components,
    ):
        raise InputError(
            "the file changed during the run; run again to convert its new content",
            path=probe_.path,
            reason="changed",
        )
    return full


def _pixels(probe_: Probe, orientation: Orientation, photo: bool) -> Pixels:

    path = probe_.path
    info = _full_header(probe_)
    page = probe_.first
    data: bytes | None = None
    if info.std_huffman:  # a Motion-JPEG frame: its stream with the tables it implies, checked
        mm = map_file(path)
        try:
            data = std_tables_stream(info, mm, path)
        finally:
            mm.close()
    if page.photometric == "CMYK":
        return _decode_jpeg(probe_, orientation, "CMYK JPEG decoded and converted to RGB")
    if page.photometric == "RGB" and photo:
        # The VL Photographic IOD admits no RGB-coded JPEG: decode and keep the pixels exactly.
        return _decode_jpeg(
            probe_, orientation, "RGB-coded JPEG decoded (VL Photographic admits only YCbCr JPEG)"
        )
    derivation: list[str] = []
    if info.process == "progressive" and orientation.is_identity:
        data = to_baseline(path, info)
        derivation.append("progressive JPEG re-coded as baseline losslessly (same DCT coefficients)")
    elif not orientation.is_identity:
        data = transform(path, info, orientation)
        if data is None:
            return _decode_jpeg(
                probe_, orientation, "JPEG decoded (DCT-domain transform not exact for its size)"
            )
        derivation.append(f"{describe(orientation)} losslessly in the DCT domain")
    if data is not None:
        new_info = parse_header(data, path)
        rows, cols = new_info.rows, new_info.columns
        jp = JpegPixels(new_info, data=data)
        photometric = page.photometric
    else:
        mm = map_file(path)
        try:
            ranges = kept_ranges(info, mm)
            # Passed on byte for byte, damage included: said in the file's report entry.
            damage = decode_warning(mm[: info.eoi_end], info.eoi_end)
        finally:
            mm.close()
        if damage:
            warnings.warn(CorruptEntropyData(damage), stacklevel=1)
        jp = JpegPixels(info, ranges=ranges)
        rows, cols, photometric = page.rows, page.columns, page.photometric
    return Pixels(
        jp,
        rows,
        cols,
        page.samples,
        8,
        photometric,
        derivation=derivation,
        lossy_source=True,
        orientation_applied=orientation,
    )


def _decode_jpeg(probe_: Probe, orientation: Orientation, why: str) -> Pixels:
    path = probe_.path
    try:
        with Image.open(path) as im:
            im.load()
            decoded: Image.Image = im
            if im.mode == "CMYK":
                decoded = _cmyk_to_rgb(im, probe_.icc_profile)
            elif im.mode not in ("L", "RGB"):
                decoded = im.convert("RGB")
            arr = np.asarray(decoded)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"JPEG claims too many pixels: {exc}", path=path) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise decode_error(path, exc) from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    derivation = [why]
    if not orientation.is_identity:
        derivation.append("stored uncompressed (lossless from the decoded pixels)")
    return native(arr, orientation, derivation, lossy_source=True)


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    if icc:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            out = ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
            if out is not None:
                return out
        except Exception:  # a broken profile falls back to the plain conversion
            pass
    return im.convert("RGB")


def pixels(probe_: Probe, orientation: Orientation, photo: bool = False) -> list[Pixels]:
    """The one instance this input gives; `photo`: the target is VL Photographic."""
    return [_pixels(probe_, orientation, photo)]
