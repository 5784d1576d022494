"""Generate the conversion benchmark corpus under bench/_corpus/ (git-ignored).

    python bench/corpus.py                   # 200 JPEGs + 50 uncompressed 16-bit TIFFs
    python bench/corpus.py --jpegs 400 --tiffs 50 --tiff-compression lzw

What it writes, and why it looks the way it does:

* ``jpeg24mp/dayNN/DSC_NNNN.JPG``: camera-like 24-megapixel photographs, 6000x4000, baseline
  JPEG, 4:2:0, quality 93, 6-10 MB each (the size real 24 MP cameras produce at "fine"). The
  pixels are one of the real photographs in sample_data/photos, cropped, mirrored and upscaled
  differently per file, plus film-grain-like noise (so the entropy-coded data is as large as a
  camera's, and no two files share a content hash: the converter converts identical content
  once). Like a camera's file, each starts with an APP1 Exif segment (no JFIF): IFD0 with
  Make/Model/Orientation/resolution/DateTime, an Exif IFD with DateTimeOriginal, SubSecTime,
  OffsetTime, exposure facts and a ~30 KB MakerNote, a GPS IFD, and IFD1 with a 160x120 JPEG
  thumbnail. Orientation is 1 (landscape), so every file is a pure pass-through for the
  converter.
* ``tiff16/scanNNN.tif`` (or ``tiff16_lzw/`` with ``--tiff-compression lzw``): 16-bit greyscale
  film scans of a 14x17-inch film at 218 dpi (3052x3706 pixels, 22.6 MB uncompressed), from the
  real film scan sample_data/film_scans/starshot.tif, upscaled, mapped onto the 16-bit range with
  a per-file exposure, with per-file scanner noise; strips of 64 rows, resolution tags, scanner
  Make/Model/Software/DateTime. Uncompressed by default; ``lzw`` writes LZW with the horizontal
  predictor instead.

Deterministic: the same arguments give the same bytes. Files that exist with the expected name
are kept (delete the folder to regenerate).
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import struct
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SAMPLE = ROOT / "sample_data"
CORPUS = BENCH / "_corpus"

JPEG_W, JPEG_H = 6000, 4000
FILM_W, FILM_H, FILM_DPI = 3052, 3706, 218  # 14 x 17 inch at 218 dpi
CAMERAS = [  # (make, model, maker-note tag) of 24 MP, 6000x4000 cameras
    ("NIKON CORPORATION", "NIKON D3500", b"Nikon\x00\x02\x11\x00\x00"),
    ("Canon", "Canon EOS 80D", b""),
    ("SONY", "ILCE-6000", b"SONY DSC \x00\x00\x00"),
    ("NIKON CORPORATION", "NIKON D7200", b"Nikon\x00\x02\x11\x00\x00"),
]
PHOTOS = ["sample_NikonD90.JPG", "005_03.jpg", "005_08.jpg", "sjtu_p0_frontal.png"]


# ------------------------------------------------------------------ EXIF (TIFF structure)

ASCII, SHORT, LONG, RATIONAL, UNDEFINED, SRATIONAL = 2, 3, 4, 5, 7, 10
_SIZE = {ASCII: 1, SHORT: 2, LONG: 4, RATIONAL: 8, UNDEFINED: 1, SRATIONAL: 8}


def _encode_value(typ: int, value: object) -> tuple[int, bytes]:
    """(count, little-endian bytes) of one tag value."""
    if typ == ASCII:
        data = str(value).encode("ascii") + b"\x00"
        return len(data), data
    if typ == UNDEFINED:
        assert isinstance(value, bytes)
        return len(value), value
    values = value if isinstance(value, (list, tuple)) else [value]
    if typ == SHORT:
        return len(values), struct.pack(f"<{len(values)}H", *values)
    if typ == LONG:
        return len(values), struct.pack(f"<{len(values)}I", *values)
    if typ in (RATIONAL, SRATIONAL):
        fmt = "<ii" if typ == SRATIONAL else "<II"
        return len(values), b"".join(struct.pack(fmt, *v) for v in values)  # type: ignore[misc]
    raise ValueError(typ)


Tag = tuple[int, int, object]  # (tag, type, value)


def _ifd_size(tags: list[Tag]) -> int:
    size = 2 + 12 * len(tags) + 4
    for _tag, typ, value in tags:
        _count, data = _encode_value(typ, value)
        if len(data) > 4:
            size += len(data) + (len(data) & 1)
    return size


def _write_ifd(tags: list[Tag], offset: int, next_ifd: int) -> bytes:
    """An IFD placed at `offset` (from the TIFF header), its out-of-line values right after it."""
    tags = sorted(tags, key=lambda t: t[0])
    head = struct.pack("<H", len(tags))
    data_at = offset + 2 + 12 * len(tags) + 4
    extra = b""
    for tag, typ, value in tags:
        count, data = _encode_value(typ, value)
        if len(data) <= 4:
            head += struct.pack("<HHI", tag, typ, count) + data.ljust(4, b"\x00")
        else:
            head += struct.pack("<HHII", tag, typ, count, data_at + len(extra))
            extra += data + (b"\x00" if len(data) & 1 else b"")
    return head + struct.pack("<I", next_ifd) + extra


def exif_segment(ifd0: list[Tag], exif: list[Tag], gps: list[Tag], thumb: bytes) -> bytes:
    """A complete APP1 Exif segment (marker and length included): IFD0 → Exif IFD, GPS IFD,
    IFD1 with a JPEG thumbnail, the thumbnail last (as cameras lay it out)."""
    # Layout: header(8) | IFD0 | Exif IFD | GPS IFD | IFD1 | thumbnail
    ifd0_full = [*ifd0, (34665, LONG, 0), (34853, LONG, 0)]
    ifd1 = [
        (0x0103, SHORT, 6),
        (0x011A, RATIONAL, [(72, 1)]),
        (0x011B, RATIONAL, [(72, 1)]),
        (0x0128, SHORT, 2),
        (0x0201, LONG, 0),
        (0x0202, LONG, len(thumb)),
    ]
    off_ifd0 = 8
    off_exif = off_ifd0 + _ifd_size(ifd0_full)
    off_gps = off_exif + _ifd_size(exif)
    off_ifd1 = off_gps + _ifd_size(gps)
    off_thumb = off_ifd1 + _ifd_size(ifd1)
    ifd0_full = [*ifd0, (34665, LONG, off_exif), (34853, LONG, off_gps)]
    ifd1 = [t if t[0] != 0x0201 else (0x0201, LONG, off_thumb) for t in ifd1]
    tiff = (
        b"II*\x00"
        + struct.pack("<I", off_ifd0)
        + _write_ifd(ifd0_full, off_ifd0, off_ifd1)
        + _write_ifd(exif, off_exif, 0)
        + _write_ifd(gps, off_gps, 0)
        + _write_ifd(ifd1, off_ifd1, 0)
        + thumb
    )
    payload = b"Exif\x00\x00" + tiff
    if len(payload) + 2 > 0xFFFF:
        raise ValueError(f"Exif segment too long ({len(payload)} bytes)")
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def _dms(value: float) -> list[tuple[int, int]]:
    value = abs(value)
    d = int(value)
    m = int((value - d) * 60)
    s = (value - d - m / 60) * 3600
    return [(d, 1), (m, 1), (round(s * 100), 100)]


def camera_exif(i: int, thumb: bytes) -> bytes:
    make, model, note_head = CAMERAS[i % len(CAMERAS)]
    rng = np.random.default_rng(1000 + i)
    shot = datetime(2023, 3, 6, 9, 12, 5) + timedelta(days=i // 25, seconds=47 * i)
    stamp = shot.strftime("%Y:%m:%d %H:%M:%S")
    ifd0: list[Tag] = [
        (0x010F, ASCII, make),
        (0x0110, ASCII, model),
        (0x0112, SHORT, 1),
        (0x011A, RATIONAL, [(300, 1)]),
        (0x011B, RATIONAL, [(300, 1)]),
        (0x0128, SHORT, 2),
        (0x0131, ASCII, "Ver.1.10"),
        (0x0132, ASCII, stamp),
        (0x0213, SHORT, 2),
    ]
    # A maker note of realistic size: the camera's header, then opaque binary data.
    maker_note = note_head + rng.integers(0, 256, 30_000 - len(note_head), dtype=np.uint8).tobytes()
    exif: list[Tag] = [
        (0x829A, RATIONAL, [(1, 125)]),
        (0x829D, RATIONAL, [(56, 10)]),
        (0x8822, SHORT, 3),
        (0x8827, SHORT, 200),
        (0x9000, UNDEFINED, b"0231"),
        (0x9003, ASCII, stamp),
        (0x9004, ASCII, stamp),
        (0x9010, ASCII, "+01:00"),
        (0x9011, ASCII, "+01:00"),
        (0x9101, UNDEFINED, b"\x01\x02\x03\x00"),
        (0x9204, SRATIONAL, [(0, 6)]),
        (0x9207, SHORT, 5),
        (0x9209, SHORT, 16),
        (0x920A, RATIONAL, [(600, 10)]),
        (0x927C, UNDEFINED, maker_note),
        (0x9290, ASCII, f"{i % 100:02d}"),
        (0x9291, ASCII, f"{(37 * i) % 100:02d}"),
        (0x9292, ASCII, "00"),
        (0xA000, UNDEFINED, b"0100"),
        (0xA001, SHORT, 1),
        (0xA002, LONG, JPEG_W),
        (0xA003, LONG, JPEG_H),
        (0xA402, SHORT, 0),
        (0xA403, SHORT, 0),
        (0xA405, SHORT, 90),
        (0xA406, SHORT, 0),
        (0xA431, ASCII, f"{6012345 + i % 4}"),
    ]
    lat, lon = 51.5236 + rng.normal(0, 0.0005), -0.1340 + rng.normal(0, 0.0005)
    gps: list[Tag] = [
        (0x0000, UNDEFINED, b"\x02\x03\x00\x00"),
        (0x0001, ASCII, "N" if lat >= 0 else "S"),
        (0x0002, RATIONAL, _dms(lat)),
        (0x0003, ASCII, "E" if lon >= 0 else "W"),
        (0x0004, RATIONAL, _dms(lon)),
        (0x0005, UNDEFINED, b"\x00"),
        (0x0006, RATIONAL, [(int(24_000 + rng.integers(0, 2000)), 1000)]),
        (0x0007, RATIONAL, [(shot.hour - 1, 1), (shot.minute, 1), (shot.second * 100, 100)]),
        (0x001D, ASCII, (shot - timedelta(hours=1)).strftime("%Y:%m:%d")),
    ]
    return exif_segment(ifd0, exif, gps, thumb)


def splice_exif(jpeg: bytes, app1: bytes) -> bytes:
    """SOI, the Exif APP1, then the encoder's segments without its JFIF APP0 (as a camera)."""
    assert jpeg[:2] == b"\xff\xd8"
    rest = jpeg[2:]
    if rest[:2] == b"\xff\xe0":
        (n,) = struct.unpack(">H", rest[2:4])
        rest = rest[2 + n :]
    return b"\xff\xd8" + app1 + rest


# ------------------------------------------------------------------ pixels

_BASES: list[np.ndarray] = []
_GRAIN: np.ndarray | None = None


def _photo_bases() -> list[np.ndarray]:
    """Each sample photograph upscaled to 6000x4000 once (cropped to 3:2 first)."""
    if not _BASES:
        for name in PHOTOS:
            im = Image.open(SAMPLE / "photos" / name).convert("RGB")
            w, h = im.size
            if w / h > 1.5:
                cw, ch = int(h * 1.5), h
            else:
                cw, ch = w, int(w / 1.5)
            left, top = (w - cw) // 2, (h - ch) // 2
            im = im.crop((left, top, left + cw, top + ch)).resize((JPEG_W, JPEG_H), Image.BICUBIC)
            _BASES.append(np.asarray(im))
    return _BASES


def _grain() -> np.ndarray:
    """A bank of gaussian sensor-like noise, indexed at a per-file offset."""
    global _GRAIN
    if _GRAIN is None:
        rng = np.random.default_rng(7)
        n = JPEG_W * JPEG_H * 3 + (1 << 22)
        _GRAIN = np.clip(rng.normal(0, 1, n) * 7.0, -127, 127).astype(np.int8)
    return _GRAIN


def make_jpeg(args: tuple[Path, int]) -> int:
    path, i = args
    if path.exists() and path.stat().st_size > 0:
        return path.stat().st_size
    rng = np.random.default_rng(i)
    base = _photo_bases()[i % len(PHOTOS)]
    grain = _grain()
    # Per file: a shifted view of the upscaled photo, maybe mirrored, a small exposure change,
    # and grain from a per-file offset into the noise bank.
    dx, dy = int(rng.integers(0, 400)), int(rng.integers(0, 260))
    view = np.roll(base, (dy, dx), axis=(0, 1))
    if rng.random() < 0.5:
        view = view[:, ::-1]
    gain = 1.0 + rng.normal(0, 0.04)
    off = int(rng.integers(0, 1 << 22))
    noise = grain[off : off + view.size].reshape(view.shape)
    px = view.astype(np.int16)
    if abs(gain - 1) > 1e-3:
        px = (px * gain).astype(np.int16)
    px += noise
    np.clip(px, 0, 255, out=px)
    im = Image.fromarray(px.astype(np.uint8), "RGB")
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=93, subsampling="4:2:0")
    tbuf = io.BytesIO()
    im.resize((160, 120), Image.BILINEAR).save(tbuf, "JPEG", quality=75)
    data = splice_exif(buf.getvalue(), camera_exif(i, tbuf.getvalue()))
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return len(data)


_FILM: np.ndarray | None = None


def _film_base() -> np.ndarray:
    """The real film scan as float32 densities in [0, 1], upscaled to 3052x3706."""
    global _FILM
    if _FILM is None:
        im = Image.open(SAMPLE / "film_scans" / "starshot.tif").convert("L")
        im = im.resize((FILM_W, FILM_H), Image.BICUBIC)
        _FILM = np.asarray(im, dtype=np.float32) / 255.0
    return _FILM


def make_tiff(args: tuple[Path, int, str]) -> int:
    import tifffile

    path, i, compression = args
    if path.exists() and path.stat().st_size > 0:
        return path.stat().st_size
    rng = np.random.default_rng(10_000 + i)
    film = _film_base()
    # Per file: exposure/contrast of the scan, a small shift, scanner noise (16-bit range).
    lo = 1500 + 800 * rng.random()
    hi = 60000 - 3000 * rng.random()
    gamma = 0.85 + 0.3 * rng.random()
    shift = (int(rng.integers(-40, 40)), int(rng.integers(-40, 40)))
    arr = np.roll(film, shift, axis=(0, 1)) ** gamma * (hi - lo) + lo
    arr += rng.normal(0, 90, arr.shape).astype(np.float32)
    px = np.clip(arr, 0, 65535).astype(np.uint16)
    when = datetime(2022, 11, 2, 14, 0, 0) + timedelta(minutes=3 * i)
    tmp = path.with_name(path.name + ".part")
    tifffile.imwrite(
        tmp,
        px,
        photometric="minisblack",
        compression=None if compression == "none" else "lzw",
        predictor=compression == "lzw" or None,
        rowsperstrip=64,
        resolution=(FILM_DPI, FILM_DPI),
        resolutionunit="INCH",
        software="VidarDiagnosticPRO 3.2",
        datetime=when.strftime("%Y:%m:%d %H:%M:%S"),
        extratags=[(271, "s", 0, "VIDAR Systems", True), (272, "s", 0, "DiagnosticPRO Advantage", True)],
        metadata=None,
    )
    os.replace(tmp, path)
    return path.stat().st_size


# ------------------------------------------------------------------ main


def jpeg_paths(n: int, root: Path = CORPUS) -> list[Path]:
    return [root / "jpeg24mp" / f"day{i // 25:02d}" / f"DSC_{i + 1:04d}.JPG" for i in range(n)]


def tiff_paths(n: int, compression: str, root: Path = CORPUS) -> list[Path]:
    folder = "tiff16" if compression == "none" else f"tiff16_{compression}"
    return [root / folder / f"scan{i + 1:03d}.tif" for i in range(n)]


def generate(
    n_jpeg: int, n_tiff: int, compression: str = "none", jobs: int | None = None, root: Path = CORPUS
) -> dict[str, list[Path]]:
    jpegs = jpeg_paths(n_jpeg, root)
    tiffs = tiff_paths(n_tiff, compression, root)
    for p in jpegs + tiffs:
        p.parent.mkdir(parents=True, exist_ok=True)
    jobs = jobs or os.cpu_count() or 1
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(jobs) as pool:
        total = 0
        for k, size in enumerate(pool.imap(make_jpeg, [(p, i) for i, p in enumerate(jpegs)]), 1):
            total += size
            if k % 25 == 0 or k == len(jpegs):
                print(f"jpeg {k}/{len(jpegs)}  {total / k / 1e6:.1f} MB average", file=sys.stderr)
    with ctx.Pool(jobs) as pool:
        total = 0
        for k, size in enumerate(pool.imap(make_tiff, [(p, i, compression) for i, p in enumerate(tiffs)]), 1):
            total += size
            if k % 10 == 0 or k == len(tiffs):
                print(f"tiff {k}/{len(tiffs)}  {total / k / 1e6:.1f} MB average", file=sys.stderr)
    return {"jpeg": jpegs, "tiff": tiffs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jpegs", type=int, default=200, help="number of 24 MP JPEGs (default 200)")
    ap.add_argument("--tiffs", type=int, default=50, help="number of 16-bit TIFFs (default 50)")
    ap.add_argument("--tiff-compression", choices=["none", "lzw"], default="none")
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--root", type=Path, default=CORPUS)
    a = ap.parse_args(argv)
    generate(a.jpegs, a.tiffs, a.tiff_compression, a.jobs, a.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
