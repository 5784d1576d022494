"""Build hostile inputs: small files that once hung, crashed or exhausted the converter.

Each is made here from a real sample image (sample_data/, see its NOTICE.md) by the mutation that
made the original reproducer (issue 16), so the tests run from a clone. `HOSTILE` maps each file
name to the (status, reason) a conversion must report; `make_hostile(folder)` writes them all.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import tifffile
from PIL import Image

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def photo(size: tuple[int, int] = (64, 64)) -> Image.Image:
    im = Image.open(SAMPLE / "photos" / "005_03.jpg").convert("RGB")
    return im.crop((400, 350, 400 + size[0], 350 + size[1]))


def grey(shape: tuple[int, int] = (16, 16)) -> np.ndarray:
    arr = np.asarray(Image.open(SAMPLE / "film_scans" / "Calc-Test_P_00041_LEFT_CC.png"))
    return (arr[300 : 300 + shape[0], 300 : 300 + shape[1]] >> 8).astype(np.uint8)


def jpeg(im: Image.Image, **kw: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85, **kw)
    return buf.getvalue()


def tiff(arr: np.ndarray, **kw: Any) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, arr, **kw)
    return buf.getvalue()


def segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, offset, total length) of each JPEG header segment up to and with the first SOS."""
    out, pos = [], 2
    while pos + 4 <= len(data):
        marker = data[pos + 1]
        (n,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        out.append((marker, pos, n + 2))
        if marker == 0xDA:
            break
        pos += n + 2
    return out


def set_sof_size(data: bytes, rows: int, cols: int) -> bytes:
    out = bytearray(data)
    for marker, pos, _ in segments(data):
        if marker in (0xC0, 0xC1, 0xC2):
            out[pos + 5 : pos + 9] = struct.pack(">HH", rows, cols)
    return bytes(out)


def ifd_entries(data: bytes | bytearray, ifd: int | None = None) -> dict[int, int]:
    """tag -> byte offset of its 12-byte entry, in a little-endian classic TIFF's IFD."""
    if ifd is None:
        (ifd,) = struct.unpack("<I", data[4:8])
    (n,) = struct.unpack("<H", data[ifd : ifd + 2])
    return {
        struct.unpack("<H", data[ifd + 2 + 12 * i : ifd + 4 + 12 * i])[0]: ifd + 2 + 12 * i for i in range(n)
    }


def set_long(data: bytearray, entry: int, value: int) -> None:
    """Make a SHORT/LONG entry a LONG holding `value`."""
    data[entry + 2 : entry + 12] = struct.pack("<HII", 4, 1, value)


def next_ifd_pos(data: bytes | bytearray, ifd: int) -> int:
    (n,) = struct.unpack("<H", data[ifd : ifd + 2])
    return ifd + 2 + 12 * n


# ------------------------------------------------------------------ the reproducers


def tiff_ifd_loop_self() -> bytes:
    data = bytearray(tiff(grey((8, 8))))
    (ifd,) = struct.unpack("<I", data[4:8])
    data[next_ifd_pos(data, ifd) : next_ifd_pos(data, ifd) + 4] = struct.pack("<I", ifd)
    return bytes(data)


def tiff_ifd_loop_back() -> bytes:
    """Page 2's next-IFD offset points back to page 1."""
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as w:
        w.write(grey((8, 8)))
        w.write(grey((8, 8)))
    data = bytearray(buf.getvalue())
    (first,) = struct.unpack("<I", data[4:8])
    (second,) = struct.unpack("<I", data[next_ifd_pos(data, first) : next_ifd_pos(data, first) + 4])
    data[next_ifd_pos(data, second) : next_ifd_pos(data, second) + 4] = struct.pack("<I", first)
    return bytes(data)


def jpeg_progressive_zero_com() -> bytes:
    """A zero-length COM (FFFE 0002) right after SOI: libjpeg's DCT reader segfaulted on it."""
    data = jpeg(photo(), progressive=True, exif=_exif(1))
    return data[:2] + b"\xff\xfe\x00\x02" + data[2:]


def tiff_rows_over_65535() -> bytes:
    return tiff(np.zeros((70000, 3), np.uint8), compression="zlib", rowsperstrip=70000)


def j2k(rows: int, cols: int) -> bytes:
    """A real JPEG 2000 codestream whose SIZ then claims another size."""
    data = bytearray(imagecodecs.jpeg2k_encode(grey((16, 16)), level=0, codecformat="j2k"))
    siz = data.index(b"\xff\x51")
    data[siz + 6 : siz + 14] = struct.pack(">II", cols, rows)  # Xsiz, Ysiz
    return bytes(data)


def tiff_2pages_page2_rows_70000() -> bytes:
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as w:
        w.write(np.asarray(photo((16, 16))), photometric="rgb", compression="zlib")
        w.write(np.zeros((70000, 3, 3), np.uint8), photometric="rgb", compression="zlib")
    return buf.getvalue()


def tiff_imagewidth_count_0() -> bytes:
    data = bytearray(tiff(grey((8, 8))))
    entry = ifd_entries(data)[256]
    data[entry + 4 : entry + 8] = struct.pack("<I", 0)
    return bytes(data)


def tiff_tilewidth_0() -> bytes:
    data = bytearray(tiff(grey((16, 16)), tile=(16, 16)))
    set_long(data, ifd_entries(data)[322], 0)
    return bytes(data)


def tiff_truncated() -> bytes:
    full = tiff(grey((512, 512)), compression="lzw", rowsperstrip=512)
    return full[: len(full) // 4]


def jpeg_forged_size_orient8() -> bytes:
    """3 KB of baseline JPEG whose SOF claims 24494x24494, with an EXIF rotation."""
    return set_sof_size(jpeg(photo(), exif=_exif(8)), 24494, 24494)


def without_dht(data: bytes) -> bytes:
    out, last = b"", 0
    for marker, pos, n in segments(data):
        if marker == 0xC4:
            out += data[last:pos]
            last = pos + n
    return out + data[last:]


def jpeg_without_dht() -> bytes:
    return without_dht(jpeg(photo()))


def jpeg_optimised_without_dht() -> bytes:
    """Tables of its own (optimised), then lost: the standard ones cannot decode it."""
    return without_dht(jpeg(photo(), optimize=True))


def jpeg_30000x30000() -> bytes:
    return set_sof_size(jpeg(photo()), 30000, 30000)


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


# name -> (builder, status, reason) of `orthovision convert FILE --on-uncertain convert`
HOSTILE: dict[str, tuple[Callable[[], bytes], str, str]] = {
    "tiff_ifd_next_points_to_itself.tif": (tiff_ifd_loop_self, "failed", "corrupt-data"),
    "tiff_ifd_page2_points_to_page1.tif": (tiff_ifd_loop_back, "failed", "corrupt-data"),
    "jpeg_progressive_zero_length_COM_after_SOI.jpg": (jpeg_progressive_zero_com, "converted", ""),
    "tiff_3x70000_rows_over_65535.tif": (tiff_rows_over_65535, "failed", "unsupported-format"),
    "j2k_siz_70000x16_columns_over_65535.j2k": (lambda: j2k(16, 70000), "failed", "unsupported-format"),
    "tiff_2pages_page2_rows_70000.tif": (tiff_2pages_page2_rows_70000, "failed", "unsupported-format"),
    "tiff_imagewidth_count_0.tif": (tiff_imagewidth_count_0, "failed", "corrupt-data"),
    "tiff_tilewidth_0.tif": (tiff_tilewidth_0, "failed", "corrupt-data"),
    "j2k_siz_100000x100000.j2k": (lambda: j2k(100000, 100000), "failed", "image-too-large"),
    "jpeg_sof_claims_24494x24494_orient8.jpg": (jpeg_forged_size_orient8, "failed", "corrupt-data"),
    # Its data decodes with the standard tables (as a Motion-JPEG frame's): they are put in.
    "jpeg_baseline_no_DHT.jpg": (jpeg_without_dht, "converted", ""),
    "jpeg_optimised_tables_lost.jpg": (jpeg_optimised_without_dht, "failed", "corrupt-data"),
    "tiff_truncated.tif": (tiff_truncated, "failed", "corrupt-data"),
    "classify_crash_sof_30000x30000.jpg": (jpeg_30000x30000, "failed", "image-too-large"),
}


def make_hostile(folder: Path) -> dict[str, tuple[str, str]]:
    """Write every hostile file into `folder`; name -> expected (status, reason)."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, (build, status, reason) in HOSTILE.items():
        (folder / name).write_bytes(build())
        expected[name] = (status, reason)
    return expected
