"""TIFF inputs (film scans, multi-page exports): tifffile parses and decodes; thumbnails and
pyramid overviews are not pages of their own; every library error becomes an input error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from struct import error as struct_error
from typing import Any

import numpy as np
import tifffile
from PIL import Image

from ..errors import CorruptImage, InputError, UnreadableInput, UnsupportedFormat
from ..types import ExifFacts, Orientation, PageFacts, Pixels, Probe
from . import exif as exif_mod
from .pixels import native
from .tiff_structure import check_structure

TIFF_PHOTOMETRIC = {0: "MONOCHROME1", 1: "MONOCHROME2", 2: "RGB", 3: "PALETTE", 5: "CMYK", 6: "RGB"}


@contextmanager
def _tiff_errors(path: Path, doing: str) -> Iterator[None]:
    """tifffile's, imagecodecs' and the OS's exceptions as this package's input errors."""
    try:
        yield
    except InputError:
        raise
    except (
        ValueError,
        struct_error,
        IndexError,
        KeyError,
        RuntimeError,
        TypeError,
        ZeroDivisionError,
        OverflowError,
        EOFError,
    ) as exc:
        # tifffile.TiffFileError is a ValueError; imagecodecs decoders raise RuntimeErrors;
        # tags of the wrong type or count surface as TypeError or ZeroDivisionError.
        text = " ".join(str(exc).split())[:200]
        raise CorruptImage(f"cannot {doing}: {type(exc).__name__}: {text}", path=path) from exc
    except OSError as exc:
        raise UnreadableInput(f"cannot read TIFF: {exc}", path=path) from exc
    except Exception as exc:
        if type(exc).__module__.startswith("imagecodecs"):
            text = " ".join(str(exc).split())[:200]
            raise CorruptImage(f"cannot {doing}: {text}", path=path) from exc
        raise


def _image_pages(tif: Any) -> Iterator[Any]:
    """The pages that are images of their own (not thumbnails or pyramid overviews)."""

    for i, page in enumerate(tif.pages):
        if isinstance(page, tifffile.TiffPage) and not page.is_reduced:
            yield i, page


def probe(path: Path, size: int) -> Probe:
    # Loops, page counts, dimensions and strip extents first: tifffile trusts them.
    check_structure(path)
    pages = []
    dpi = None
    exif_facts = ExifFacts()
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


def _tiff_exif(page: object) -> ExifFacts:
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
            facts = ExifFacts(dt, "", "", facts.make, facts.model, facts.orientation)
    return facts


def pixels(probe_: Probe, orientation: Orientation, photo: bool = False) -> list[Pixels]:

    path = probe_.path
    out: list[Pixels] = []
    with _tiff_errors(path, "decode TIFF data"), tifffile.TiffFile(path) as tif:
        for facts, (_, page) in zip(probe_.pages, _image_pages(tif), strict=False):
            arr, photometric, derivation = _normalise_tiff(page, page.asarray(), facts)
            lossy = int(page.compression) in (6, 7, 34892)  # OJPEG, JPEG, lossy JPEG
            out.append(native(arr, orientation, derivation, photometric, lossy_source=lossy))
    return out


def _normalise_tiff(page: object, arr: np.ndarray, facts: PageFacts) -> tuple[np.ndarray, str, list[str]]:
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
