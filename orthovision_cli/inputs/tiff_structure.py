"""Walk a TIFF's page chain ourselves before tifffile does, so that a hostile structure costs a
bounded amount of work and no allocation: a next-IFD offset that loops, more pages than anyone
scans, dimension tags with no value, zero tile sizes, strips past the end of the file, and
dimensions that the compressed data could never hold are refused here with one line.

Only the IFD headers and the offset/byte-count arrays are read (from a memory map).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from ..errors import CorruptImage, ImplausibleSize

MAX_PAGES = 4096  # a multi-page export of one patient never comes near this
MAX_ENTRIES = 4096  # tags in one IFD; real files have a few dozen

# Bytes of one value of each TIFF field type.
TYPE_SIZE = {
    1: 1,
    2: 1,
    3: 2,
    4: 4,
    5: 8,
    6: 1,
    7: 1,
    8: 2,
    9: 4,
    10: 8,
    11: 4,
    12: 8,
    13: 4,
    16: 8,
    17: 8,
    18: 8,
}
INT_FORMAT = {1: "B", 3: "H", 4: "I", 6: "b", 8: "h", 9: "i", 13: "I", 16: "Q", 17: "q", 18: "Q"}

# The most decoded bytes one byte of compressed data can give, per compression scheme (measured
# on all-zero data: deflate 1028:1, LZW 1304:1; PackBits 128 bytes from 2). For JPEG: one bit per
# 8x8 block of one sample at the very least. Schemes not listed (zstd, LZMA, ...) have no useful
# bound: --max-pixels and the worker's memory budget hold them.
MAX_RATIO = {1: 1.0, 32773: 64.0, 5: 1400.0, 8: 1100.0, 32946: 1100.0, 7: 512.0, 6: 512.0}

TAG_WIDTH, TAG_LENGTH, TAG_BITS, TAG_COMPRESSION = 256, 257, 258, 259
TAG_STRIP_OFFSETS, TAG_SPP, TAG_STRIP_COUNTS = 273, 277, 279
TAG_TILE_WIDTH, TAG_TILE_LENGTH, TAG_TILE_OFFSETS, TAG_TILE_COUNTS = 322, 323, 324, 325
TAG_SUBFILE = 254


@dataclass(frozen=True, slots=True)
class _Layout:
    big: bool
    order: str  # "<" or ">"

    @property
    def entry(self) -> int:
        return 20 if self.big else 12

    @property
    def count_fmt(self) -> str:
        return "Q" if self.big else "H"

    @property
    def offset_fmt(self) -> str:
        return "Q" if self.big else "I"

    @property
    def inline(self) -> int:
        return 8 if self.big else 4


def check_structure(path: Path) -> int:
    """Raise CorruptImage / TruncatedImage for a structure no reader should trust; else the
    number of IFDs in the page chain."""
    try:
        with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return _walk(mm, path)
    except (OSError, ValueError):
        return 0  # unreadable: the reader's own open says why


def _walk(buf: mmap.mmap, path: Path) -> int:
    size = len(buf)
    if size < 8:
        raise CorruptImage("truncated: TIFF ends inside its header", path=path)
    order = "<" if buf[:2] == b"II" else ">"
    (magic,) = struct.unpack(order + "H", buf[2:4])
    lay = _Layout(magic == 43, order)
    if lay.big:
        if size < 16:
            raise CorruptImage("truncated: BigTIFF ends inside its header", path=path)
        (first,) = struct.unpack(order + "Q", buf[8:16])
    else:
        (first,) = struct.unpack(order + "I", buf[4:8])
    seen: set[int] = set()
    offset = first
    pages = 0
    while offset:
        if offset in seen:
            raise CorruptImage(f"TIFF page chain loops (IFD at byte {offset} is reached twice)", path=path)
        if pages >= MAX_PAGES:
            raise CorruptImage(f"TIFF has more than {MAX_PAGES} pages", path=path)
        seen.add(offset)
        offset = _check_ifd(buf, lay, offset, pages, path)
        pages += 1
    if not pages:
        raise CorruptImage("TIFF has no image directory", path=path)
    return pages


def _check_ifd(buf: mmap.mmap, lay: _Layout, offset: int, index: int, path: Path) -> int:
    """Check one IFD; return the next IFD's offset (0 at the end)."""
    size = len(buf)
    csize = 8 if lay.big else 2
    if offset < 8 or offset + csize > size:
        raise CorruptImage(
            f"TIFF page {index + 1}: its directory (byte {offset}) lies past the end of the file",
            path=path,
        )
    (n,) = struct.unpack(lay.order + lay.count_fmt, buf[offset : offset + csize])
    if n == 0 or n > MAX_ENTRIES:
        raise CorruptImage(f"TIFF page {index + 1}: directory with {n} entries", path=path)
    end = offset + csize + n * lay.entry
    next_size = 8 if lay.big else 4
    if end + next_size > size:
        raise CorruptImage(
            f"truncated: TIFF page {index + 1}'s directory ends past the end of the file", path=path
        )
    tags: dict[int, tuple[int, int, int]] = {}  # tag -> (type, count, position of the value)
    for i in range(n):
        pos = offset + csize + i * lay.entry
        if lay.big:
            tag, typ, count = struct.unpack(lay.order + "HHQ", buf[pos : pos + 12])
        else:
            tag, typ, count = struct.unpack(lay.order + "HHI", buf[pos : pos + 8])
        value_pos = pos + (12 if lay.big else 8)
        nbytes = TYPE_SIZE.get(typ, 1) * count
        if nbytes > lay.inline:
            (value_pos,) = struct.unpack(lay.order + lay.offset_fmt, buf[value_pos : value_pos + lay.inline])
            if tag in _NEEDED and value_pos + nbytes > size:
                raise CorruptImage(
                    f"TIFF page {index + 1}: tag {tag} lies past the end of the file", path=path
                )
        tags[tag] = (typ, count, value_pos)
    (nxt,) = struct.unpack(lay.order + lay.offset_fmt, buf[end : end + next_size])
    _check_page(buf, lay, tags, index, path)
    return int(nxt)


_NEEDED = frozenset(
    {
        TAG_WIDTH,
        TAG_LENGTH,
        TAG_BITS,
        TAG_COMPRESSION,
        TAG_STRIP_OFFSETS,
        TAG_SPP,
        TAG_STRIP_COUNTS,
        TAG_TILE_WIDTH,
        TAG_TILE_LENGTH,
        TAG_TILE_OFFSETS,
        TAG_TILE_COUNTS,
        TAG_SUBFILE,
    }
)


def _values(buf: mmap.mmap, lay: _Layout, entry: tuple[int, int, int]) -> list[int]:
    typ, count, pos = entry
    fmt = INT_FORMAT.get(typ)
    if fmt is None:
        return []
    raw = buf[pos : pos + TYPE_SIZE[typ] * count]
    return list(struct.unpack(f"{lay.order}{count}{fmt}", raw))


def _one(
    buf: mmap.mmap,
    lay: _Layout,
    tags: dict[int, tuple[int, int, int]],
    tag: int,
    default: int | None,
    name: str,
    index: int,
    path: Path,
) -> int:
    if tag not in tags:
        if default is None:
            raise CorruptImage(f"TIFF page {index + 1} has no {name}", path=path)
        return default
    vals = _values(buf, lay, tags[tag])
    if not vals:
        raise CorruptImage(f"TIFF page {index + 1}: {name} has no value", path=path)
    return vals[0]


def _check_page(
    buf: mmap.mmap, lay: _Layout, tags: dict[int, tuple[int, int, int]], index: int, path: Path
) -> None:
    page = index + 1
    width = _one(buf, lay, tags, TAG_WIDTH, None, "image width", index, path)
    length = _one(buf, lay, tags, TAG_LENGTH, None, "image length", index, path)
    if width <= 0 or length <= 0:
        raise CorruptImage(f"TIFF page {page} is {width}x{length} pixels", path=path)
    spp = _one(buf, lay, tags, TAG_SPP, 1, "samples per pixel", index, path)
    if not 1 <= spp <= 64:
        raise CorruptImage(f"TIFF page {page}: {spp} samples per pixel", path=path)
    bits_list = _values(buf, lay, tags[TAG_BITS]) if TAG_BITS in tags else [1]
    if not bits_list or not all(1 <= b <= 64 for b in bits_list):
        raise CorruptImage(f"TIFF page {page}: bad bits per sample {bits_list[:4]}", path=path)
    compression = _one(buf, lay, tags, TAG_COMPRESSION, 1, "compression", index, path)
    tiled = TAG_TILE_WIDTH in tags or TAG_TILE_LENGTH in tags or TAG_TILE_OFFSETS in tags
    if tiled:
        tw = _one(buf, lay, tags, TAG_TILE_WIDTH, None, "tile width", index, path)
        tl = _one(buf, lay, tags, TAG_TILE_LENGTH, None, "tile length", index, path)
        if tw <= 0 or tl <= 0:
            raise CorruptImage(f"TIFF page {page}: tiles of {tw}x{tl} pixels", path=path)
        offsets_tag, counts_tag = TAG_TILE_OFFSETS, TAG_TILE_COUNTS
    else:
        offsets_tag, counts_tag = TAG_STRIP_OFFSETS, TAG_STRIP_COUNTS
    if offsets_tag not in tags or counts_tag not in tags:
        raise CorruptImage(f"TIFF page {page} has no image data offsets", path=path)
    subfile = _one(buf, lay, tags, TAG_SUBFILE, 0, "subfile type", index, path)
    if subfile & 1:
        return  # a thumbnail or overview: not converted, its data is never read
    offsets = _values(buf, lay, tags[offsets_tag])
    counts = _values(buf, lay, tags[counts_tag])
    size = len(buf)
    held = 0
    for off, cnt in zip(offsets, counts, strict=False):
        if off + cnt > size:
            if off >= size:
                raise CorruptImage(
                    f"TIFF page {page}: image data offset {off:,} lies past the end of the file",
                    path=path,
                )
            raise CorruptImage(
                f"truncated: TIFF page {page}'s image data ends past the end of the file "
                f"({size - off:,} of {cnt:,} bytes of a strip present)",
                path=path,
            )
        held += cnt
    ratio = MAX_RATIO.get(compression)
    if ratio is None:
        return
    bits = max(bits_list)
    decoded = (width * spp * bits + 7) // 8 * length
    if decoded > max(held, 1) * ratio + (0 if compression == 1 else 4096):
        what = "truncated" if compression == 1 else "more than the compression could give"
        lead = "truncated: " if compression == 1 else ""
        raise ImplausibleSize(
            f"{lead}TIFF page {page} claims {width}x{length} pixels ({decoded:,} bytes) but holds "
            f"{held:,} bytes of image data ({what})",
            rows=length,
            columns=width,
            path=path,
        )
