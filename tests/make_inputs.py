"""Build every input kind the converter must read, from the real images in sample_data/.

Each kind is a small crop of a real photograph or film scan (see sample_data/NOTICE.md for
provenance), written with the library that real cameras/scanners' formats come from (libjpeg
via Pillow/jpeglib, libtiff-compatible tifffile, libpng). Marker strings planted in metadata
let tests prove that no metadata reaches the output.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jpeglib
import numpy as np
import tifffile
from PIL import Image, ImageOps

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
SECRETS = (
    b"SECRET-ARTIST",
    b"SECRET-MAKERNOTE",
    b"SECRET-GPS",
    b"SECRET-XMP",
    b"SECRET-IPTC",
    b"SECRET-COMMENT",
    b"SECRET-DESCRIPTION",
)


@dataclass
class Kind:
    name: str
    path: Path
    fmt: str  # jpeg, tiff, png
    modality: str
    body_part: str
    expect_photometric: str
    pages: int = 1
    orientation: str = ""  # correction the converter should apply (from EXIF)
    lossless: bool = True  # pixels compare exactly
    extra: dict[str, object] = field(default_factory=dict)


def face(size: tuple[int, int] = (320, 240)) -> Image.Image:
    im = Image.open(SAMPLE / "photos" / "005_03.jpg").convert("RGB")
    return im.crop((400, 350, 400 + size[0], 350 + size[1]))


def film(dtype: type = np.uint16, shape: tuple[int, int] = (300, 220)) -> np.ndarray:
    im = Image.open(SAMPLE / "film_scans" / "Calc-Test_P_00041_LEFT_CC.png")
    arr = np.asarray(im).astype(np.uint16)
    arr = arr[300 : 300 + shape[0], 300 : 300 + shape[1]]
    if dtype == np.uint8:
        return (arr >> 8).astype(np.uint8)
    return arr


def exif_block(orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"  # Make
    exif[0x0110] = "TC-1"  # Model
    exif[0x013B] = "SECRET-ARTIST"  # Artist
    exif[0x0112] = orientation
    exif_ifd = {0x9003: "2024:03:05 14:15:16", 0x927C: b"SECRET-MAKERNOTE"}
    exif[0x8769] = exif_ifd
    exif[0x8825] = {0x001B: b"ASCII\x00\x00\x00SECRET-GPS"}  # GPSProcessingMethod
    return exif.tobytes()


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def add_metadata(jpeg: bytes) -> bytes:
    """Insert XMP (APP1), IPTC (APP13) and a comment right after SOI/APP0."""
    xmp = _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta>SECRET-XMP</x:xmpmeta>")
    iptc = _segment(0xED, b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x0fSECRET-IPTC\x00")
    com = _segment(0xFE, b"SECRET-COMMENT")
    return jpeg[:2] + xmp + iptc + com + jpeg[2:]


def jpeg_bytes(im: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def make_all(folder: Path) -> list[Kind]:
    folder.mkdir(parents=True, exist_ok=True)
    kinds: list[Kind] = []

    def put(name: str, data: bytes | bytearray) -> Path:
        p = folder / name
        p.write_bytes(data)
        return p

    im = face()
    # JPEG ------------------------------------------------------------
    kinds.append(
        Kind(
            "jpeg-baseline-exif",
            put("baseline.jpg", add_metadata(jpeg_bytes(im, exif=exif_block()))),
            "jpeg",
            "XC",
            "HEAD",
            "YBR_FULL_422",
            lossless=False,
        )
    )
    # Cameras append preview images (MPF) after EOI, each with EXIF of its own.
    preview = jpeg_bytes(im.resize((80, 60)), exif=exif_block())
    kinds.append(
        Kind(
            "jpeg-appended-preview",
            put("mpf.jpg", jpeg_bytes(im.rotate(3)) + preview),
            "jpeg",
            "XC",
            "HEAD",
            "YBR_FULL_422",
            lossless=False,
        )
    )
    kinds.append(
        Kind(
            "jpeg-444",
            put("full444.jpg", jpeg_bytes(im, subsampling=0)),
            "jpeg",
            "XC",
            "HEAD",
            "YBR_FULL_422",
            lossless=False,
        )
    )
    kinds.append(
        Kind(
            "jpeg-progressive",
            put("progressive.jpg", add_metadata(jpeg_bytes(im, progressive=True, exif=exif_block()))),
            "jpeg",
            "XC",
            "HEAD",
            "YBR_FULL_422",
            lossless=False,
        )
    )
    kinds.append(
        Kind(
            "jpeg-gray",
            put("gray.jpg", jpeg_bytes(im.convert("L"))),
            "jpeg",
            "DX",
            "CHEST",
            "MONOCHROME2",
            lossless=False,
        )
    )
    # A black-and-white photograph (the classifier makes a greyscale face XC): VL Photographic
    # Image in MONOCHROME2, the JPEG passed through (mirrored: other content than jpeg-gray's).
    kinds.append(
        Kind(
            "jpeg-gray-photo",
            put("gray-photo.jpg", jpeg_bytes(ImageOps.mirror(im).convert("L"))),
            "jpeg",
            "XC",
            "HEAD",
            "MONOCHROME2",
            lossless=False,
        )
    )
    # RGB-coded JPEG: passes through into Secondary Capture; decoded for VL Photographic.
    kinds.append(
        Kind(
            "jpeg-rgb-app14",
            put("rgb.jpg", jpeg_bytes(im, keep_rgb=True)),
            "jpeg",
            "OT",
            "CHEST",
            "RGB",
            lossless=False,
        )
    )
    kinds.append(
        Kind(
            "jpeg-rgb-app14-photo",
            put("rgb-photo.jpg", jpeg_bytes(im.rotate(180), keep_rgb=True)),
            "jpeg",
            "XC",
            "HEAD",
            "RGB",
            lossless=False,
        )
    )
    kinds.append(
        Kind(
            "jpeg-cmyk",
            put("cmyk.jpg", jpeg_bytes(im.convert("CMYK"))),
            "jpeg",
            "XC",
            "HEAD",
            "RGB",
            lossless=False,
        )
    )
    ycck = jpeglib.from_spatial(np.asarray(im.convert("CMYK")), in_color_space=jpeglib.JCS_CMYK)
    ycck.jpeg_color_space = jpeglib.JCS_YCCK
    ycck.write_spatial(str(folder / "ycck.jpg"))
    kinds.append(Kind("jpeg-ycck", folder / "ycck.jpg", "jpeg", "XC", "HEAD", "RGB", lossless=False))
    # EXIF orientation 6 (turn 90 clockwise): 320x240 is a whole number of MCUs -> DCT domain.
    kinds.append(
        Kind(
            "jpeg-exif-rotate-perfect",
            put("rot6.jpg", jpeg_bytes(im, exif=exif_block(6))),
            "jpeg",
            "XC",
            "HEAD",
            "YBR_FULL_422",
            orientation="90",
            lossless=False,
        )
    )
    odd = face((317, 235))
    kinds.append(
        Kind(
            "jpeg-exif-rotate-decode",
            put("rot8.jpg", jpeg_bytes(odd, exif=exif_block(8))),
            "jpeg",
            "XC",
            "HEAD",
            "RGB",
            orientation="270",
            lossless=False,
        )
    )
    # TIFF ------------------------------------------------------------
    g16, g8 = film(np.uint16), film(np.uint8)
    rgb = np.asarray(im)
    res: dict[str, Any] = {"resolution": (300, 300), "resolutionunit": "INCH"}
    tifffile.imwrite(folder / "gray8.tif", g8, photometric="minisblack", **res)
    kinds.append(Kind("tiff-gray8-raw", folder / "gray8.tif", "tiff", "DX", "CHEST", "MONOCHROME2"))
    tifffile.imwrite(
        folder / "gray16-lzw.tif", g16, photometric="minisblack", compression="lzw", predictor=True, **res
    )
    kinds.append(
        Kind("tiff-gray16-lzw-predictor", folder / "gray16-lzw.tif", "tiff", "PX", "JAW", "MONOCHROME2")
    )
    tifffile.imwrite(
        folder / "rgb-deflate.tif",
        rgb,
        photometric="rgb",
        compression="zlib",
        description="SECRET-DESCRIPTION",
    )
    kinds.append(Kind("tiff-rgb8-deflate", folder / "rgb-deflate.tif", "tiff", "XC", "HEAD", "RGB"))
    tifffile.imwrite(folder / "rgb-packbits.tif", rgb, photometric="rgb", compression="packbits")
    kinds.append(Kind("tiff-rgb8-packbits", folder / "rgb-packbits.tif", "tiff", "OT", "CHEST", "RGB"))
    tifffile.imwrite(folder / "rgb-jpeg.tif", rgb, photometric="rgb", compression="jpeg")
    kinds.append(Kind("tiff-rgb8-jpeg", folder / "rgb-jpeg.tif", "tiff", "XC", "HEAD", "RGB", lossless=False))
    tifffile.imwrite(folder / "rgb16.tif", rgb.astype(np.uint16) * 257, photometric="rgb", **res)
    kinds.append(Kind("tiff-rgb16", folder / "rgb16.tif", "tiff", "OT", "CHEST", "RGB"))
    with tifffile.TiffWriter(folder / "multipage.tif") as tw:
        for k in range(3):
            tw.write(np.roll(g16, 7 * k, axis=0), photometric="minisblack", compression="lzw", **res)
    kinds.append(
        Kind("tiff-multipage-gray16", folder / "multipage.tif", "tiff", "DX", "CHEST", "MONOCHROME2", pages=3)
    )
    tifffile.imwrite(folder / "miniswhite.tif", 255 - g8, photometric="miniswhite", **res)
    kinds.append(Kind("tiff-miniswhite", folder / "miniswhite.tif", "tiff", "DX", "CHEST", "MONOCHROME1"))
    tifffile.imwrite(folder / "big.tif", g16, photometric="minisblack", bigtiff=True, **res)
    kinds.append(Kind("tiff-bigtiff", folder / "big.tif", "tiff", "DX", "CHEST", "MONOCHROME2"))
    # PNG -------------------------------------------------------------
    Image.fromarray(g8).save(folder / "gray8.png")
    kinds.append(Kind("png-gray8", folder / "gray8.png", "png", "CR", "CHEST", "MONOCHROME2"))
    Image.fromarray(g16).save(folder / "gray16.png")
    kinds.append(Kind("png-gray16", folder / "gray16.png", "png", "DX", "CHEST", "MONOCHROME2"))
    im.save(folder / "rgb.png")
    kinds.append(Kind("png-rgb", folder / "rgb.png", "png", "XC", "HEAD", "RGB"))
    # JPEG 2000, as some practice software exports: reversible (lossless) wavelet here.
    import imagecodecs

    put(
        "photo.jp2",
        imagecodecs.jpeg2k_encode(np.asarray(im.rotate(90)), level=0, reversible=True, codecformat="jp2"),
    )
    kinds.append(Kind("jpeg2000-lossless", folder / "photo.jp2", "jpeg2000", "XC", "HEAD", "RGB"))
    return kinds
