"""Cheap previews for classifiers: decode only what a model needs.

- JPEG: the EXIF thumbnail when it is big enough and has the picture's aspect ratio (cameras
  often letterbox 160x120 thumbnails), else DCT-domain scaled decoding (libjpeg decodes 1/2, 1/4
  or 1/8 of the coefficients), so a 24-megapixel photograph costs a 750x500 decode.
- TIFF: the smallest pyramid level or reduced-resolution page that is big enough; uncompressed
  pages are memory-mapped and subsampled so only the rows needed are read.
- Anything else Pillow opens (PNG, JPEG 2000, ...): a plain decode.

Deep images (16-bit, float) are windowed to 8 bits between their 0.5 and 99.5 percentiles.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..defaults import DEFAULT_MAX_PIXELS
from ..errors import CorruptImage, ImageTooLarge, UnreadableInput
from .formats import sniff
from .pixels import decode_error
from .reader import FORMATS, probe

# A thumbnail may differ this much in aspect ratio from the picture before it is distrusted.
THUMB_ASPECT_TOLERANCE = 0.03


def load_preview(path: Path, max_side: int, *, probed: bool = False) -> np.ndarray:
    """RGB uint8 array, longer side about `max_side` (never upscaled). `probed`: the caller has
    run the readers' `probe` on this file already (within a limit no looser than Pillow's)."""
    if not probed and sniff(path) in FORMATS:
        # The readers' bounds first (page loops, forged sizes, --max-pixels): Pillow trusts them.
        probe(path, max(Image.MAX_IMAGE_PIXELS or 0, DEFAULT_MAX_PIXELS))
    try:
        with Image.open(path) as im:
            if im.format in ("JPEG", "MPO"):
                arr = _jpeg_preview(path, im, max_side)
            elif im.format == "TIFF":
                arr = _tiff_preview(path, im, max_side)
            else:
                im.load()
                arr = _to_rgb8(im, max_side)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the header claims too many pixels: {exc}", path=path) from exc
    except (
        UnidentifiedImageError,
        SyntaxError,
        ValueError,
        struct.error,
        TypeError,
        ZeroDivisionError,
        EOFError,
        IndexError,
        KeyError,
        RuntimeError,
    ) as exc:
        text = " ".join(str(exc).split())[:200]
        raise CorruptImage(f"cannot decode preview: {type(exc).__name__}: {text}", path=path) from exc
    except MemoryError as exc:
        raise ImageTooLarge("not enough memory to decode the preview", path=path) from exc
    except OSError as exc:
        if exc.errno is None:  # Pillow's decoders report damaged data as a plain OSError
            raise decode_error(path, exc) from exc
        raise UnreadableInput(f"cannot read preview: {exc}", path=path) from exc
    return arr


def _jpeg_preview(path: Path, im: Image.Image, max_side: int) -> np.ndarray:
    w, h = im.size
    arr = _mpf_preview(path, w / h, max_side) if getattr(im, "n_frames", 1) > 1 else None
    if arr is not None:
        return arr
    thumb = exif_thumbnail(im.info.get("exif"))
    if thumb is not None:
        try:
            with Image.open(io.BytesIO(thumb)) as t:
                tw, th = t.size
                same_shape = abs(tw / th - w / h) <= THUMB_ASPECT_TOLERANCE * (w / h)
                if max(tw, th) >= max_side and same_shape:
                    t.draft("RGB", (max_side, max_side))
                    t.load()
                    return _to_rgb8(t, max_side)
        except (OSError, SyntaxError, ValueError, ZeroDivisionError):
            pass  # a broken thumbnail is no reason to fail: decode the picture itself
    im.draft("RGB", (max_side, max_side))
    im.load()
    return _to_rgb8(im, max_side)


def _mpf_preview(path: Path, aspect: float, max_side: int) -> np.ndarray | None:
    """The camera's MPF preview (1-2 MP; decoding it costs a fraction of the 24 MP picture's
    entropy decoding), or None. A preview is only a shortcut: one that is broken in any way
    (an APP2 pointing at garbage, a forged size, truncated data) is ignored, and the picture
    itself is decoded from an image object the failed attempt never touched."""
    try:
        with Image.open(path) as mpo:
            for frame in range(1, min(getattr(mpo, "n_frames", 1), 4)):
                mpo.seek(frame)
                pw, ph = mpo.size
                if max(pw, ph) >= max_side and abs(pw / ph - aspect) <= THUMB_ASPECT_TOLERANCE * aspect:
                    mpo.draft("RGB", (max_side, max_side))
                    mpo.load()
                    return _to_rgb8(mpo, max_side)
    except Exception:  # whatever a broken preview raises, the picture itself decides
        return None
    return None


def exif_thumbnail(exif: bytes | None) -> bytes | None:
    """The JPEG thumbnail of IFD1 in an EXIF block (with or without the `Exif\\0\\0` prefix)."""
    if not exif:
        return None
    data = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
    if len(data) < 8 or data[:2] not in (b"II", b"MM"):
        return None
    end = "<" if data[:2] == b"II" else ">"
    try:
        (ifd0,) = struct.unpack_from(end + "I", data, 4)
        (n0,) = struct.unpack_from(end + "H", data, ifd0)
        (ifd1,) = struct.unpack_from(end + "I", data, ifd0 + 2 + 12 * n0)
        if ifd1 == 0:
            return None
        (n1,) = struct.unpack_from(end + "H", data, ifd1)
        offset = length = 0
        for i in range(n1):
            tag, _typ, _count, value = struct.unpack_from(end + "HHII", data, ifd1 + 2 + 12 * i)
            if tag == 0x0201:
                offset = value
            elif tag == 0x0202:
                length = value
    except struct.error:
        return None
    if offset <= 0 or length <= 0 or offset + length > len(data):
        return None
    blob = data[offset : offset + length]
    return blob if blob.startswith(b"\xff\xd8") else None


def _tiff_preview(path: Path, im: Image.Image, max_side: int) -> np.ndarray:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            levels = list(getattr(series, "levels", [series]))
            # Smallest level that is still big enough; level 0 is the full image.
            chosen = levels[0]
            for level in levels[1:]:
                if max(level.shape[-3:-1] if level.ndim >= 3 else level.shape) >= max_side:
                    chosen = level
            page = chosen.pages[0] if hasattr(chosen, "pages") else chosen
            if page is None:
                raise ValueError("empty TIFF series")
            h, w = int(page.imagelength), int(page.imagewidth)
            step = max(1, min(h, w) // max_side, max(h, w) // (2 * max_side))
            arr: np.ndarray
            if page.is_memmappable and page.is_contiguous and page.dtype is not None:
                # Uncompressed: map the pixels and read only every step-th row.
                full = np.memmap(
                    path,
                    dtype=page.dtype.newbyteorder(tif.byteorder),
                    mode="r",
                    offset=int(page.dataoffsets[0]),
                    shape=tuple(page.shape),
                )
                arr = np.array(full[::step, ::step])
                del full
            else:
                arr = page.asarray()[::step, ::step]
            if page.photometric == 0:  # MINISWHITE: dark means bright
                arr = np.iinfo(arr.dtype).max - arr if arr.dtype.kind == "u" else -arr
    except Exception:
        # tifffile may refuse odd files that Pillow still reads: fall back to a full decode.
        im.load()
        return _to_rgb8(im, max_side)
    return _array_to_rgb8(arr, max_side)


def _array_to_rgb8(arr: np.ndarray, max_side: int) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # planar configuration
    if arr.ndim == 3:
        arr = arr[..., :3] if arr.shape[-1] >= 3 else arr[..., 0]
    if arr.dtype != np.uint8:
        arr = _window8(arr)
    im = Image.fromarray(np.ascontiguousarray(arr))
    return _to_rgb8(im, max_side)


def _window8(arr: np.ndarray) -> np.ndarray:
    a = arr.astype(np.float32)
    sample = a[:: max(1, a.shape[0] // 256), :: max(1, a.shape[1] // 256)]
    lo, hi = (float(v) for v in np.percentile(sample, (0.5, 99.5)))
    if hi <= lo:
        lo, hi = float(a.min()), float(a.max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip((a - lo) * scale, 0, 255).astype(np.uint8)


def _to_rgb8(im: Image.Image, max_side: int) -> np.ndarray:
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        im = Image.fromarray(_window8(np.asarray(im)))
    if im.mode not in ("RGB", "L"):
        im = im.convert("RGB")
    if max(im.size) > max_side:
        # reducing_gap: Pillow first shrinks by an integer factor (box filter), which is fast.
        im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(im.convert("RGB"))
