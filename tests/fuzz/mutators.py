"""Seeded mutation fuzzing of image inputs (issue 16).

`seeds()` builds small real inputs from the repository's sample images (sample_data/, see its
NOTICE.md): baseline and progressive JPEG with EXIF, a real radiograph JPEG as it is, 8- and
16-bit PNG, TIFF uncompressed / LZW multi-page / tiled deflate / JPEG-compressed, JPEG 2000.
`mutate(data, fmt, rng)` applies one to three of: byte flips, truncation, huge dimension fields,
IFD loops, zero-length and duplicated segments, bogus EXIF offsets. Same seed, same files.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_data"


# ------------------------------------------------------------------ seeds (real images)


def _photo(size: tuple[int, int] = (160, 120)) -> Image.Image:
    im = Image.open(SAMPLE / "photos" / "005_03.jpg").convert("RGB")
    return im.crop((400, 350, 400 + size[0], 350 + size[1]))


def _film(shape: tuple[int, int] = (96, 80)) -> np.ndarray:
    arr = np.asarray(Image.open(SAMPLE / "film_scans" / "Calc-Test_P_00041_LEFT_CC.png"))
    return arr[300 : 300 + shape[0], 300 : 300 + shape[1]].astype(np.uint16)


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif[0x0112] = orientation
    exif[0x8769] = {0x9003: "2024:03:05 14:15:16"}
    return exif.tobytes()


def _camera_exif() -> bytes:
    """A real camera's EXIF block (maker notes, sub-IFDs, thumbnail) as it is."""
    with Image.open(SAMPLE / "photos" / "sample_NikonD90.JPG") as cam:
        return bytes(cam.info["exif"])


def _jpeg(im: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85, **kw)
    return buf.getvalue()


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _tiff(pages: list[np.ndarray], **kw: object) -> bytes:
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as w:
        for p in pages:
            w.write(p, **kw)  # type: ignore[arg-type]
    return buf.getvalue()


def seeds() -> dict[str, tuple[str, bytes]]:
    """name -> (format, bytes) of each seed."""
    grey8 = (_film() >> 8).astype(np.uint8)
    rgb = np.asarray(_photo((64, 48)))
    return {
        "camera_exif.jpg": ("jpeg", _jpeg(_photo(), exif=_camera_exif())),
        "progressive_exif6.jpg": ("jpeg", _jpeg(_photo((128, 96)), progressive=True, exif=_exif(6))),
        "radiograph.jpg": ("jpeg", (SAMPLE / "radiographs" / "IMG0003297.jpg").read_bytes()),
        "grey8.png": ("png", _png(grey8)),
        "grey16.png": ("png", _png(_film())),
        "film16.tif": ("tiff", _tiff([_film()])),
        "pages_lzw.tif": ("tiff", _tiff([rgb, rgb[::-1]], compression="lzw", photometric="rgb")),
        "tiled_deflate.tif": ("tiff", _tiff([grey8[:64, :64]], tile=(32, 32), compression="zlib")),
        "jpeg_in.tif": ("tiff", _tiff([rgb], compression="jpeg", photometric="rgb")),
        "grey.j2k": ("j2k", bytes(imagecodecs.jpeg2k_encode(grey8, level=0, codecformat="j2k"))),
    }


# ------------------------------------------------------------------ mutations


def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 16)):
        out[rng.randrange(len(out))] ^= rng.randint(1, 255)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(1, len(data))]


HUGE = (0, 1, 65535, 65536, 70000, 24494, 30000, 100000, 2**31 - 1, 2**32 - 1)


def huge_dimensions(data: bytes, fmt: str, rng: random.Random) -> bytes:
    out = bytearray(data)
    side = rng.choice(HUGE)
    other = rng.choice((side, rng.choice(HUGE), rng.randint(1, 64)))
    if fmt == "jpeg":
        for marker, pos, _ in jpeg_segments(data):
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                out[pos + 5 : pos + 9] = struct.pack(">HH", side & 0xFFFF, other & 0xFFFF)
    elif fmt == "png":
        out[16:24] = struct.pack(">II", side, other)
        out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
    elif fmt == "tiff":
        entries = tiff_entries(data)
        for tag, value in ((256, side), (257, other)):
            if tag in entries:
                e = entries[tag]
                out[e + 2 : e + 12] = struct.pack("<HII", 4, 1, value)
    elif fmt == "j2k":
        siz = data.find(b"\xff\x51")
        if siz >= 0:
            out[siz + 6 : siz + 14] = struct.pack(">II", side, other)
    return bytes(out)


def ifd_loop(data: bytes, fmt: str, rng: random.Random) -> bytes:
    if fmt != "tiff":
        return flip_bytes(data, rng)
    out = bytearray(data)
    ifds = tiff_ifds(data)
    if not ifds:
        return bytes(out)
    src = rng.choice(ifds)
    (n,) = struct.unpack("<H", out[src : src + 2])
    nxt = src + 2 + 12 * n
    out[nxt : nxt + 4] = struct.pack("<I", rng.choice(ifds))
    return bytes(out)


def zero_length_segment(data: bytes, fmt: str, rng: random.Random) -> bytes:
    if fmt != "jpeg":
        return truncate(data, rng)
    segs = jpeg_segments(data)
    pos = rng.choice([2] + [p for _, p, _ in segs])
    marker = rng.choice((0xFE, 0xE1, 0xE2, 0xED, 0xDB, 0xC4))
    return data[:pos] + bytes([0xFF, marker, 0, 2]) + data[pos:]


def duplicate_segment(data: bytes, fmt: str, rng: random.Random) -> bytes:
    if fmt != "jpeg":
        return flip_bytes(data, rng)
    segs = jpeg_segments(data)
    _, pos, n = rng.choice(segs)
    at = rng.choice([2] + [p for _, p, _ in segs])
    return data[:at] + data[pos : pos + n] + data[at:]


def bogus_exif_offsets(data: bytes, fmt: str, rng: random.Random) -> bytes:
    out = bytearray(data)
    if fmt == "jpeg":
        start = data.find(b"Exif\x00\x00")
        if start < 0:
            return flip_bytes(data, rng)
        tiff_at = start + 6
    elif fmt == "tiff":
        tiff_at = 0
    else:
        return flip_bytes(data, rng)
    # An offset field inside the EXIF/TIFF structure: the first IFD, or one entry's value.
    entries = tiff_entries(bytes(out[tiff_at:]))
    if not entries or rng.random() < 0.3:
        out[tiff_at + 4 : tiff_at + 8] = struct.pack(
            "<I", rng.choice((0, 3, 2**32 - 1, rng.randrange(2**32)))
        )
    else:
        e = tiff_at + rng.choice(list(entries.values()))
        out[e + 4 : e + 12] = struct.pack(
            "<II", rng.choice((2**31, rng.randrange(2**32))), rng.randrange(2**32)
        )
    return bytes(out)


MUTATIONS: dict[str, Callable[[bytes, str, random.Random], bytes]] = {
    "flip": lambda d, f, r: flip_bytes(d, r),
    "truncate": lambda d, f, r: truncate(d, r),
    "huge-dimensions": huge_dimensions,
    "ifd-loop": ifd_loop,
    "zero-length-segment": zero_length_segment,
    "duplicate-segment": duplicate_segment,
    "bogus-exif-offsets": bogus_exif_offsets,
}


def mutate(data: bytes, fmt: str, rng: random.Random) -> tuple[bytes, list[str]]:
    names = rng.sample(list(MUTATIONS), rng.randint(1, 3))
    for name in names:
        try:
            data = MUTATIONS[name](data, fmt, rng)
        except (struct.error, IndexError, ValueError):
            data = flip_bytes(data, rng)  # the structure is already too broken to aim at
        if not data:
            data = b"\xff"
    return data, names


def make_corpus(folder: Path, count: int, seed: int = 16) -> dict[str, list[str]]:
    """`count` mutated files under `folder`, cycling over the seeds; name -> mutations."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    base = sorted(seeds().items())
    made = {}
    for i in range(count):
        name, (fmt, data) = base[i % len(base)]
        mutated, names = mutate(data, fmt, rng)
        out = f"{i:05d}_{name}"
        (folder / out).write_bytes(mutated)
        made[out] = names
    return made


# ------------------------------------------------------------------ structure helpers


def jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    out, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        (n,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        out.append((marker, pos, n + 2))
        if marker == 0xDA:
            break
        pos += n + 2
    return out


def tiff_ifds(data: bytes) -> list[int]:
    if data[:4] != b"II*\x00":
        return []
    (off,) = struct.unpack("<I", data[4:8])
    seen: list[int] = []
    while off and off not in seen and off + 2 <= len(data) and len(seen) < 64:
        seen.append(off)
        (n,) = struct.unpack("<H", data[off : off + 2])
        nxt = off + 2 + 12 * n
        if nxt + 4 > len(data):
            break
        (off,) = struct.unpack("<I", data[nxt : nxt + 4])
    return seen


def tiff_entries(data: bytes) -> dict[int, int]:
    """tag -> offset of its entry in the first IFD of a little-endian TIFF."""
    ifds = tiff_ifds(data)
    if not ifds:
        return {}
    ifd = ifds[0]
    (n,) = struct.unpack("<H", data[ifd : ifd + 2])
    out = {}
    for i in range(n):
        e = ifd + 2 + 12 * i
        if e + 12 > len(data):
            break
        out[struct.unpack("<H", data[e : e + 2])[0]] = e
    return out
