"""Read an input: `probe` (cheap facts, no pixel decode) and `load_pixels` (what goes into DICOM).

Data flows one way: probe → (classify) → plan → load_pixels(probe, orientation) → encode/write.
Formats are recognised by content. JPEG pixel data is passed through untouched where possible;
everything else is decoded and kept bit-exact.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from struct import error as struct_error
from typing import Any

import numpy as np
from PIL import Image

from ..errors import (
    CorruptImage,
    ImageTooLarge,
    InputError,
    TruncatedImage,
    UnreadableInput,
    UnsupportedFormat,
)
from ..labels.model import Orientation
from . import exif as exif_mod
from .formats import SUPPORTED, sniff
from .jpeg import JpegInfo, kept_ranges, parse_header

DEFAULT_MAX_PIXELS = 600_000_000  # per frame; a 24 MP camera has 24 M, a big film scan ~100 M


@dataclass(frozen=True, slots=True)
class PageFacts:
    rows: int
    columns: int
    samples: int
    bits: int  # bits per sample (8 or 16)
    photometric: str  # MONOCHROME1, MONOCHROME2, RGB, YBR_FULL, YBR_FULL_422, PALETTE, CMYK
    description: str = ""  # e.g. "TIFF LZW page 1"


@dataclass
class Probe:
    """Cheap facts about one input file; picklable."""

    path: Path
    format: str
    size: int
    pages: list[PageFacts]
    exif: exif_mod.ExifFacts = field(default_factory=exif_mod.ExifFacts)
    dpi: tuple[float, float] | None = None  # (x, y) dots per inch
    icc_profile: bytes | None = None
    jpeg: JpegInfo | None = None  # for JPEG inputs
    mtime: float = 0.0

    @property
    def first(self) -> PageFacts:
        return self.pages[0]


@dataclass
class JpegPixels:
    """Encapsulated JPEG: either byte ranges of the source file (streamed) or new bytes."""

    info: JpegInfo
    ranges: list[tuple[int, int]] | None = None  # ranges of the source file
    data: bytes | None = None  # re-coded stream (progressive→baseline, DCT transform)

    @property
    def length(self) -> int:
        if self.data is not None:
            return len(self.data)
        assert self.ranges is not None
        return sum(b - a for a, b in self.ranges)


@dataclass
class NativePixels:
    """Uncompressed frames: array shape (frames, rows, columns, samples)."""

    array: np.ndarray
    photometric: str  # MONOCHROME1, MONOCHROME2, RGB
    bits_stored: int

    @property
    def frames(self) -> int:
        return int(self.array.shape[0])


@dataclass
class Pixels:
    """What load_pixels returns for one output instance."""

    pixels: JpegPixels | NativePixels
    rows: int
    columns: int
    samples: int
    bits: int
    photometric: str
    frames: int = 1
    derivation: list[str] = field(default_factory=list)  # what was done to the source pixels
    lossy_source: bool = False  # pixels come from a lossy (JPEG) source
    lossy_method: str = "ISO_10918_1"  # DICOM Lossy Image Compression Method of the source
    orientation_applied: Orientation = field(default_factory=Orientation)


def _check_size(path: Path, rows: int, cols: int, samples: int, max_pixels: int) -> None:
    if rows * cols > max_pixels:
        raise ImageTooLarge(
            f"{cols}x{rows} pixels exceeds the limit of {max_pixels:,} pixels per frame "
            "(raise --max-pixels if the file is genuine)",
            path=path,
        )


# ---------------------------------------------------------------- probe


def probe(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Probe:
    fmt = sniff(path)
    if fmt == "empty":
        raise CorruptImage("file is empty (0 bytes)", path=path)
    if fmt not in SUPPORTED:
        what = "unrecognised content" if fmt == "unknown" else f"{fmt} is not supported"
        raise UnsupportedFormat(f"{what}; expected JPEG, TIFF, PNG or JPEG 2000", path=path)
    try:
        st = path.stat()
    except OSError as exc:
        raise UnreadableInput(f"cannot stat file: {exc.strerror or exc}", path=path) from exc
    size = st.st_size
    if fmt == "jpeg":
        result = _probe_jpeg(path, size)
    elif fmt == "tiff":
        result = _probe_tiff(path, size)
    elif fmt == "jpeg2000":
        result = _probe_j2k(path, size)
    else:
        result = _probe_png(path, size)
    result.mtime = st.st_mtime
    for page in result.pages:
        _check_size(path, page.rows, page.columns, page.samples, max_pixels)
    return result


def _map_file(path: Path) -> mmap.mmap:
    try:
        with path.open("rb") as f:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise UnreadableInput(f"cannot read file: {exc}", path=path) from exc


JPEG_PHOTOMETRIC = {"GRAY": "MONOCHROME2", "RGB": "RGB", "CMYK": "CMYK", "YCCK": "CMYK"}


def _probe_jpeg(path: Path, size: int) -> Probe:
    mm = _map_file(path)
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


TIFF_PHOTOMETRIC = {0: "MONOCHROME1", 1: "MONOCHROME2", 2: "RGB", 3: "PALETTE", 5: "CMYK", 6: "RGB"}


@contextmanager
def _tiff_errors(path: Path, doing: str) -> Iterator[None]:
    """tifffile's, imagecodecs' and the OS's exceptions as this package's input errors."""
    try:
        yield
    except InputError:
        raise
    except (ValueError, struct_error, IndexError, KeyError, RuntimeError) as exc:
        # tifffile.TiffFileError is a ValueError; imagecodecs decoders raise RuntimeErrors.
        raise CorruptImage(f"cannot {doing}: {exc}", path=path) from exc
    except OSError as exc:
        raise UnreadableInput(f"cannot read TIFF: {exc}", path=path) from exc
    except Exception as exc:
        if type(exc).__module__.startswith("imagecodecs"):
            raise CorruptImage(f"cannot {doing}: {exc}", path=path) from exc
        raise


def _image_pages(tif: Any) -> Iterator[Any]:
    """The pages that are images of their own (not thumbnails or pyramid overviews)."""
    import tifffile

    for i, page in enumerate(tif.pages):
        if isinstance(page, tifffile.TiffPage) and not page.is_reduced:
            yield i, page


def _probe_tiff(path: Path, size: int) -> Probe:
    import tifffile

    pages = []
    dpi = None
    exif_facts = exif_mod.ExifFacts()
    with _tiff_errors(path, "parse TIFF structure"), tifffile.TiffFile(path) as tif:
        for i, page in _image_pages(tif):
            pages.append(_tiff_page_facts(path, page, i))
            if dpi is None:
                dpi = _tiff_dpi(page)
            if i == 0:
                exif_facts = _tiff_exif(page)
    if not pages:
        raise CorruptImage("TIFF contains no image", path=path)
    return Probe(path, "tiff", size, pages, exif_facts, dpi)


def _tiff_page_facts(path: Path, page: object, index: int) -> PageFacts:
    import tifffile

    assert isinstance(page, tifffile.TiffPage)
    photometric_code = int(page.photometric)
    photometric = TIFF_PHOTOMETRIC.get(photometric_code)
    if photometric is None:
        raise UnsupportedFormat(f"TIFF photometric interpretation {photometric_code}", path=path)
    dtype = np.dtype(page.dtype) if page.dtype is not None else None
    if dtype is None or dtype.kind not in "ub" or dtype.itemsize > 2:
        raise UnsupportedFormat(
            f"TIFF sample type {dtype} (only 1-, 8- and 16-bit unsigned integers)", path=path
        )
    samples = int(page.samplesperpixel) - len(page.extrasamples or ())
    bits = 16 if dtype.itemsize == 2 else 8
    if photometric == "PALETTE":
        samples, photometric, bits = 3, "RGB", 8 if bits == 8 else 16
    if photometric == "CMYK" and samples != 4:
        raise UnsupportedFormat("TIFF separated (CMYK) with other than 4 inks", path=path)
    compression = getattr(page.compression, "name", str(page.compression))
    return PageFacts(
        int(page.imagelength),
        int(page.imagewidth),
        samples,
        bits,
        photometric,
        f"TIFF {compression} page {index + 1}",
    )


def _tiff_dpi(page: object) -> tuple[float, float] | None:
    tags = page.tags  # type: ignore[attr-defined]
    try:
        xr = tags["XResolution"].value
        yr = tags["YResolution"].value
        unit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    except KeyError:
        return None

    def ratio(v: object) -> float:
        if isinstance(v, tuple):
            return v[0] / v[1] if v[1] else 0.0
        return float(v)  # type: ignore[arg-type]

    x, y = ratio(xr), ratio(yr)
    if unit == 3:  # per centimetre
        x, y = x * 2.54, y * 2.54
    elif unit != 2:
        return None
    if x <= 1 or y <= 1:
        return None
    return (x, y)


def _tiff_exif(page: object) -> exif_mod.ExifFacts:
    tags = page.tags  # type: ignore[attr-defined]
    exif = Image.Exif()
    for name, code in (("Make", 0x010F), ("Model", 0x0110), ("DateTime", 0x0132)):
        if name in tags:
            exif[code] = tags[name].value
    if "Orientation" in tags:
        exif[0x0112] = int(tags["Orientation"].value)
    facts = exif_mod.facts_from_exif(exif)
    sub = tags["ExifTag"].value if "ExifTag" in tags else None
    if isinstance(sub, dict) and "DateTimeOriginal" in sub:
        dt = exif_mod._parse_dt(str(sub["DateTimeOriginal"]))
        if dt is not None:
            facts = exif_mod.ExifFacts(dt, "", "", facts.make, facts.model, facts.orientation)
    return facts


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


def _probe_png(path: Path, size: int) -> Probe:
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
    dpi = (float(raw_dpi[0]), float(raw_dpi[1])) if raw_dpi and raw_dpi[0] > 1 else None
    page = PageFacts(h, w, samples, bits, photometric, "PNG")
    return Probe(path, "png", size, [page], exif_facts, dpi)


def _png_bit_depth(path: Path) -> int:
    with path.open("rb") as f:
        head = f.read(33)
    return head[24] if len(head) >= 25 else 8


# ---------------------------------------------------------------- pixels


def orient_array(arr: np.ndarray, orientation: Orientation) -> np.ndarray:
    """Apply a correction to (rows, columns[, samples]) pixels."""
    if orientation.rotate:
        arr = np.rot90(arr, k=-(orientation.rotate // 90), axes=(0, 1))
    if orientation.flip:
        arr = arr[:, ::-1]
    return np.ascontiguousarray(arr)


def load_pixels(
    probe_: Probe, orientation: Orientation | None = None, *, photo: bool = False
) -> list[Pixels]:
    """The pixels to store, one entry per output instance (multi-page TIFFs may give several).
    `photo`: the target is a VL Photographic Image (which admits no RGB-coded JPEG)."""
    orientation = orientation or Orientation()
    if probe_.format == "jpeg":
        return [_jpeg_pixels(probe_, orientation, photo)]
    if probe_.format == "tiff":
        return _tiff_pixels(probe_, orientation)
    if probe_.format == "jpeg2000":
        return [_j2k_pixels(probe_, orientation)]
    return [_png_pixels(probe_, orientation)]


def _native(arr: np.ndarray, orientation: Orientation, derivation: list[str],
            photometric: str | None = None, **kw: object) -> Pixels:
    """Pixels of a decoded (rows, columns, samples) array, turned as the labels say."""
    arr = orient_array(arr, orientation)
    if not orientation.is_identity:
        derivation.append(_describe(orientation))
    photometric = photometric or ("MONOCHROME2" if arr.shape[2] == 1 else "RGB")
    bits = 16 if arr.dtype == np.uint16 else 8
    return Pixels(NativePixels(arr[None], photometric, bits), arr.shape[0], arr.shape[1],
                  arr.shape[2], bits, photometric, derivation=derivation,
                  orientation_applied=orientation, **kw)  # type: ignore[arg-type]


def _describe(orientation: Orientation) -> str:
    parts = []
    if orientation.rotate:
        parts.append(f"rotated {orientation.rotate} degrees clockwise")
    if orientation.flip:
        parts.append("mirrored left-right")
    return " and ".join(parts)


def _jpeg_pixels(probe_: Probe, orientation: Orientation, photo: bool) -> Pixels:
    from . import jpeg_transform

    path = probe_.path
    assert probe_.jpeg is not None
    info = probe_.jpeg
    page = probe_.first
    if page.photometric == "CMYK":
        return _decode_jpeg(probe_, orientation, "CMYK JPEG decoded and converted to RGB")
    if page.photometric == "RGB" and photo:
        # The VL Photographic IOD admits no RGB-coded JPEG: decode and keep the pixels exactly.
        return _decode_jpeg(probe_, orientation, "RGB-coded JPEG decoded (VL Photographic "
                            "admits only YCbCr JPEG)")
    derivation: list[str] = []
    data: bytes | None = None
    if info.process == "progressive" and orientation.is_identity:
        data = jpeg_transform.to_baseline(path, info)
        derivation.append("progressive JPEG re-coded as baseline losslessly (same DCT coefficients)")
    elif not orientation.is_identity:
        data = jpeg_transform.transform(path, info, orientation)
        if data is None:
            return _decode_jpeg(
                probe_, orientation, "JPEG decoded (DCT-domain transform not exact for its size)"
            )
        derivation.append(f"{_describe(orientation)} losslessly in the DCT domain")
    if data is not None:
        new_info = parse_header(data, path)
        rows, cols = new_info.rows, new_info.columns
        jp = JpegPixels(new_info, data=data)
        photometric = page.photometric
    else:
        mm = _map_file(path)
        try:
            ranges = kept_ranges(info, mm)
        finally:
            mm.close()
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
    except OSError as exc:
        raise _decode_error(path, exc) from exc
    if arr.ndim == 2:
        arr = arr[:, :, None]
    derivation = [why]
    if not orientation.is_identity:
        derivation.append("stored uncompressed (lossless from the decoded pixels)")
    return _native(arr, orientation, derivation, lossy_source=True)


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None) -> Image.Image:
    if icc:
        try:
            import io

            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            out = ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
            if out is not None:
                return out
        except Exception:  # a broken profile falls back to the plain conversion
            pass
    return im.convert("RGB")


def _decode_error(path: Path, exc: Exception) -> InputError:
    text = str(exc)
    if "truncated" in text.lower() or "premature" in text.lower():
        return TruncatedImage(f"image data is truncated: {text}", path=path)
    return CorruptImage(f"cannot decode image data: {text}", path=path)


def _tiff_pixels(probe_: Probe, orientation: Orientation) -> list[Pixels]:
    import tifffile

    path = probe_.path
    out: list[Pixels] = []
    with _tiff_errors(path, "decode TIFF data"), tifffile.TiffFile(path) as tif:
        for facts, (_, page) in zip(probe_.pages, _image_pages(tif), strict=False):
            arr, photometric, derivation = _normalise_tiff(page, page.asarray(), facts)
            lossy = int(page.compression) in (6, 7, 34892)  # OJPEG, JPEG, lossy JPEG
            out.append(_native(arr, orientation, derivation, photometric, lossy_source=lossy))
    return out


def _normalise_tiff(
    page: object, arr: np.ndarray, facts: PageFacts
) -> tuple[np.ndarray, str, list[str]]:
    """(rows, cols, samples) array, photometric, derivation notes."""
    axes: str = page.axes  # type: ignore[attr-defined]
    derivation: list[str] = []
    # Bring the array to Y, X, S order, whatever the planar configuration.
    if "S" in axes:
        order = [axes.index(a) for a in "YXS" if a in axes]
        keep = [i for i, a in enumerate(axes) if a in "YXS"]
        if len(keep) != arr.ndim:
            arr = arr.reshape([arr.shape[i] for i in keep])
            axes = "".join(axes[i] for i in keep)
            order = [axes.index(a) for a in "YXS"]
        arr = arr.transpose(order)
    else:
        arr = arr.reshape(arr.shape[-2], arr.shape[-1])[:, :, None]
    photometric = facts.photometric
    if int(page.photometric) == 3:  # type: ignore[attr-defined]  # palette: expand through the colour map
        cmap = np.asarray(page.colormap)  # type: ignore[attr-defined]
        idx = arr[:, :, 0]
        rgb = cmap[:, idx].transpose(1, 2, 0)
        arr = rgb.astype(np.uint8) if rgb.max() <= 255 else rgb.astype(np.uint16)
        derivation.append("palette colours expanded to RGB")
        photometric = "RGB"
    if photometric == "CMYK":
        im = Image.fromarray(arr[:, :, :4].astype(np.uint8), "CMYK")
        arr = np.asarray(im.convert("RGB"))
        derivation.append("CMYK converted to RGB")
        photometric = "RGB"
    if arr.shape[2] > facts.samples:
        arr = arr[:, :, : facts.samples]
        derivation.append("extra (alpha) samples dropped")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
        derivation.append("bilevel pixels expanded to 8 bits (0/255)")
    elif arr.dtype.kind == "u" and arr.dtype.itemsize == 1:
        arr = arr.astype(np.uint8, copy=False)
    elif arr.dtype.kind == "u" and arr.dtype.itemsize == 2:
        arr = arr.astype(np.uint16, copy=False)
    return np.ascontiguousarray(arr), photometric, derivation


def _png_pixels(probe_: Probe, orientation: Orientation) -> Pixels:
    import imagecodecs

    path = probe_.path
    try:
        arr = imagecodecs.png_decode(path.read_bytes())
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
    return _native(arr, orientation, derivation)


# ---------------------------------------------------------------- JPEG 2000 (practice exports)

J2K_MODES = {"L": (1, "MONOCHROME2", 8), "I;16": (1, "MONOCHROME2", 16), "RGB": (3, "RGB", 8),
             "RGBA": (3, "RGB", 8), "LA": (1, "MONOCHROME2", 8)}


def j2k_irreversible(data: bytes) -> bool:
    """True when the codestream's COD segment names the 9-7 irreversible wavelet (lossy)."""
    pos = data.find(b"\xff\x52")
    # Lcod(2) Scod(1) progression(1) layers(2) MCT(1) levels(1) cbw(1) cbh(1) style(1) transform(1)
    if pos < 0 or pos + 14 > len(data):
        return True  # unknown: claim lossy rather than lossless
    return data[pos + 13] == 0


def _probe_j2k(path: Path, size: int) -> Probe:
    try:
        with Image.open(path) as im:
            mode, (w, h) = im.mode, im.size
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptImage(f"cannot parse JPEG 2000: {exc}", path=path) from exc
    if mode not in J2K_MODES:
        raise UnsupportedFormat(f"JPEG 2000 with mode {mode}", path=path)
    samples, photometric, bits = J2K_MODES[mode]
    return Probe(path, "jpeg2000", size, [PageFacts(h, w, samples, bits, photometric, "JPEG 2000")])


def _j2k_pixels(probe_: Probe, orientation: Orientation) -> Pixels:
    import imagecodecs

    path = probe_.path
    try:
        data = path.read_bytes()
        arr = imagecodecs.jpeg2k_decode(data)
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
    return _native(arr, orientation, derivation, lossy_source=j2k_irreversible(data),
                   lossy_method="ISO_15444_1")
