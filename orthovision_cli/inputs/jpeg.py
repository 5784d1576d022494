"""JPEG at the byte level: segment parsing, metadata stripping, and the facts DICOM needs.

The pixel data of a JPEG passes into DICOM byte for byte; only metadata segments that can carry
personal data are dropped (see `KEEP_APP`). Nothing here decodes pixels.
"""

from __future__ import annotations

import mmap
import re
import struct
from collections.abc import Iterable
from pathlib import Path

from ..errors import CorruptImage, ImplausibleSize, TruncatedImage, UnsupportedFormat
from ..types import JpegInfo, Segment

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"

# Start-of-frame markers and what they mean.
SOF_PROCESS = {
    0xC0: "baseline",
    0xC1: "extended",
    0xC2: "progressive",
    0xC3: "lossless",
    0xC5: "differential-sequential",
    0xC6: "differential-progressive",
    0xC7: "differential-lossless",
    0xC9: "extended-arithmetic",
    0xCA: "progressive-arithmetic",
    0xCB: "lossless-arithmetic",
    0xCD: "differential-sequential-arithmetic",
    0xCE: "differential-progressive-arithmetic",
    0xCF: "differential-lossless-arithmetic",
}
STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RSTn: no length field
# Huffman-coded processes whose streams pass into DICOM (the others are refused as unsupported).
HUFFMAN_SOF = frozenset({0xC0, 0xC1, 0xC2})


def _dht(table_class: int, table_id: int, counts: Iterable[int], values: bytes) -> bytes:
    return bytes([table_class << 4 | table_id, *counts]) + values


# The "typical" Huffman tables of ITU-T T.81 Annex K.3 (tables K.3 to K.6): what a decoder uses
# for a Motion-JPEG frame, which leaves them out (the AVI1 convention). Counts of codes per
# length 1..16, then the values in code order.
_AC_LUMA_VALUES = bytes.fromhex(
    "01020300041105122131410613516107227114328191a1082342b1c11552d1f0"
    "2433627282090a161718191a25262728292a3435363738393a43444546474849"
    "4a535455565758595a636465666768696a737475767778797a83848586878889"
    "8a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5"
    "c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8"
    "f9fa"
)
_AC_CHROMA_VALUES = bytes.fromhex(
    "000102031104052131061241510761711322328108144291a1b1c109233352f0"
    "156272d10a162434e125f11718191a262728292a35363738393a434445464748"
    "494a535455565758595a636465666768696a737475767778797a828384858687"
    "88898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3"
    "c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8"
    "f9fa"
)
_STD_TABLES = b"".join(
    (
        _dht(0, 0, (0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0), bytes(range(12))),
        _dht(1, 0, (0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D), _AC_LUMA_VALUES),
        _dht(0, 1, (0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0), bytes(range(12))),
        _dht(1, 1, (0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77), _AC_CHROMA_VALUES),
    )
)
STD_DHT = b"\xff\xc4" + struct.pack(">H", 2 + len(_STD_TABLES)) + _STD_TABLES
STD_HUFFMAN_IDS = frozenset({(0, 0), (1, 0), (0, 1), (1, 1)})  # (class 0 DC / 1 AC, id)


def _keep_segment(marker: int, payload_head: bytes) -> bool:
    """Which header segments survive into DICOM.

    Kept: APP0 JFIF (not its JFXX thumbnail extension), APP2 ICC_PROFILE, APP14 Adobe (colour
    transform), and every coding segment (DQT, DHT, DRI, SOF, SOS, DNL, ...). Dropped: APP1 (EXIF,
    XMP), APP13 (IPTC/Photoshop), COM, and every other APPn (maker notes, MPF, FlashPix,
    thumbnails), since any of them can hold personal data and none is needed to decode the pixels.
    """
    if marker == 0xFE:  # COM
        return False
    if 0xE0 <= marker <= 0xEF:
        if marker == 0xE0:
            return payload_head.startswith(b"JFIF\x00")
        if marker == 0xE2:
            return payload_head.startswith(b"ICC_PROFILE\x00")
        if marker == 0xEE:
            return payload_head.startswith(b"Adobe")
        return False
    return True


def parse_header(buf: bytes | mmap.mmap, path: Path | None = None) -> JpegInfo:
    """Parse the segments before the first scan and find the end of the image (EOI).

    Raises CorruptImage / TruncatedImage for malformed data, UnsupportedFormat for non-JPEG.
    """
    size = len(buf)
    if size < 4 or buf[0:2] != SOI:
        raise UnsupportedFormat("not a JPEG file (no SOI marker)", path=path)
    info = JpegInfo(file_size=size)
    pos = 2
    while True:
        # Skip fill bytes.
        if pos + 2 > size:
            raise TruncatedImage("JPEG ends inside its header", path=path)
        if buf[pos] != 0xFF:
            raise CorruptImage(f"JPEG marker expected at byte {pos}", path=path)
        while pos < size and buf[pos] == 0xFF and pos + 1 < size and buf[pos + 1] == 0xFF:
            pos += 1
        marker = buf[pos + 1]
        if marker in STANDALONE:
            pos += 2
            continue
        if marker == 0xD9:
            raise CorruptImage("JPEG has no image data (EOI before any scan)", path=path)
        if pos + 4 > size:
            raise TruncatedImage("JPEG ends inside a segment header", path=path)
        (seglen,) = struct.unpack(">H", buf[pos + 2 : pos + 4])
        if seglen < 2:
            raise CorruptImage(f"JPEG segment with bad length at byte {pos}", path=path)
        end = pos + 2 + seglen
        if end > size:
            raise TruncatedImage("JPEG ends inside a segment", path=path)
        seg = Segment(marker, pos, 2 + seglen)
        payload = bytes(buf[pos + 4 : end]) if marker != 0xDA else b""
        info.segments.append(seg)
        if marker == 0xDA:
            info.scan_start = pos
            break
        if marker in SOF_PROCESS:
            if len(payload) < 6:
                raise CorruptImage("JPEG frame header too short", path=path)
            p, rows, cols, nc = struct.unpack(">BHHB", payload[:6])
            if len(payload) < 6 + 3 * nc:
                raise CorruptImage("JPEG frame header too short for its components", path=path)
            comps = []
            for i in range(nc):
                cid, hv, tq = payload[6 + 3 * i : 9 + 3 * i]
                comps.append((cid, hv >> 4, hv & 15, tq))
            info.sof_marker = marker
            info.process = SOF_PROCESS[marker]
            info.precision, info.rows, info.columns, info.components = p, rows, cols, comps
        elif marker == 0xE0 and payload.startswith(b"JFIF\x00"):
            info.jfif = True
        elif marker == 0xE1 and payload.startswith(b"Exif\x00"):
            info.has_exif = True
            info.exif = payload[6:]
        elif marker == 0xE2 and payload.startswith(b"ICC_PROFILE\x00"):
            # Multi-chunk ICC: concatenate in order (chunks come in order in practice).
            info.icc_profile = (info.icc_profile or b"") + payload[14:]
        elif marker == 0xEE and payload.startswith(b"Adobe") and len(payload) >= 12:
            info.adobe_transform = payload[11]
        pos = end
    if not info.sof_marker:
        raise CorruptImage("JPEG has no frame header (SOF)", path=path)
    if info.rows == 0 or info.columns == 0:
        raise CorruptImage("JPEG frame header gives zero rows or columns", path=path)
    info.eoi_end, info.late_segments, later, entropy = _find_eoi(buf, info.scan_start, path)
    if info.sof_marker in HUFFMAN_SOF:
        _check_decodable(buf, info, later, entropy, path)
    return info


# A marker inside entropy-coded data: 0xFF followed by anything but a stuffed 0x00, a restart
# marker (D0-D7) or another fill 0xFF. The C regex engine scans ~2 GB/s.
_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")


def _find_eoi(
    buf: bytes | mmap.mmap, sos: int, path: Path | None
) -> tuple[int, list[Segment], list[Segment], dict[int, int]]:
    """Walk the scans to the image's own EOI. Not the file's last FFD9: cameras append preview
    images (MPF) with EXIF of their own after it, and those must not reach the DICOM.
    Also returns metadata segments (APPn/COM) found between scans, to be dropped, every segment
    from the first scan on, and the entropy-coded bytes after each SOS (by its offset)."""
    size = len(buf)
    pos = sos
    late: list[Segment] = []
    later: list[Segment] = []
    entropy: dict[int, int] = {}
    while True:
        if pos + 2 > size:
            raise TruncatedImage("JPEG is truncated (no EOI marker)", path=path)
        marker = buf[pos + 1]
        if marker == 0xD9:
            return pos + 2, late, later, entropy
        if pos + 4 > size:
            raise TruncatedImage("JPEG ends inside a segment header", path=path)
        (seglen,) = struct.unpack(">H", buf[pos + 2 : pos + 4])
        end = pos + 2 + seglen
        if seglen < 2 or end > size:
            raise TruncatedImage("JPEG ends inside a segment", path=path)
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:
            late.append(Segment(marker, pos, 2 + seglen))
        later.append(Segment(marker, pos, 2 + seglen))
        if marker == 0xDA:
            m = _MARKER.search(buf, end)
            if m is None:
                raise TruncatedImage("JPEG is truncated (no EOI marker)", path=path)
            entropy[pos] = m.start() - end
            pos = m.start()
        else:
            pos = end
            # Fill bytes may precede a marker.
            while pos + 1 < size and buf[pos] == 0xFF and buf[pos + 1] == 0xFF:
                pos += 1
            if pos + 1 >= size or buf[pos] != 0xFF:
                raise CorruptImage(f"JPEG marker expected at byte {pos}", path=path)


def with_std_tables(info: JpegInfo, buf: bytes | mmap.mmap) -> bytes:
    """The stripped stream of a JPEG without Huffman tables, the standard tables put in before
    its first scan: a complete JPEG that any decoder reads (the coded data is unchanged)."""
    parts = []
    for a, b in kept_ranges(info, buf):
        if a <= info.scan_start < b:
            parts += [bytes(buf[a : info.scan_start]), STD_DHT, bytes(buf[info.scan_start : b])]
        else:
            parts.append(bytes(buf[a:b]))
    return b"".join(parts)


def kept_ranges(info: JpegInfo, buf: bytes | mmap.mmap) -> list[tuple[int, int]]:
    """Byte ranges of the source that make up the stripped JPEG (SOI .. EOI, minus dropped
    segments, minus anything after EOI such as MPF secondary images)."""
    ranges: list[tuple[int, int]] = [(0, 2)]
    for seg in info.segments:
        if seg.marker == 0xDA:
            break
        head = bytes(buf[seg.offset + 4 : seg.offset + 4 + 16])
        if _keep_segment(seg.marker, head):
            _append(ranges, seg.offset, seg.end)
    start = info.scan_start
    for seg in info.late_segments:
        head = bytes(buf[seg.offset + 4 : seg.offset + 4 + 16])
        if not _keep_segment(seg.marker, head):
            _append(ranges, start, seg.offset)
            start = seg.end
    _append(ranges, start, info.eoi_end)
    return ranges


def _append(ranges: list[tuple[int, int]], start: int, end: int) -> None:
    if ranges and ranges[-1][1] == start:
        ranges[-1] = (ranges[-1][0], end)
    else:
        ranges.append((start, end))


def join_ranges(buf: bytes | mmap.mmap, ranges: Iterable[tuple[int, int]]) -> bytes:
    return b"".join(bytes(buf[a:b]) for a, b in ranges)


def strip_metadata(data: bytes) -> bytes:
    """The JPEG without EXIF/XMP/IPTC/comments/maker segments and trailing data (lossless)."""
    info = parse_header(data)
    return join_ranges(data, kept_ranges(info, data))


def _check_decodable(
    buf: bytes | mmap.mmap,
    info: JpegInfo,
    later: list[Segment],
    entropy: dict[int, int],
    path: Path | None,
) -> None:
    """Refuse a stream that no decoder can decode, before it is passed through into DICOM: every
    quantisation and Huffman table a scan uses must be defined before it, every component must
    be coded, and the entropy-coded data must be able to hold the blocks the frame claims (a
    forged size would otherwise make a decoder fabricate gigabytes of pixels)."""
    huff: set[tuple[int, int]] = set()  # (class 0 DC / 1 AC, id)
    if (
        info.sof_marker in (0xC0, 0xC1)
        and info.precision == 8
        and not any(seg.marker == 0xC4 for seg in [*info.segments, *later])
    ):
        # A Motion-JPEG frame: the standard tables are implied (and put in when it is written).
        info.std_huffman = True
        huff |= STD_HUFFMAN_IDS
    quant: set[int] = set()
    frame_ids = {c[0] for c in info.components}
    coded_dc: set[int] = set()
    progressive = info.process == "progressive"
    seen: set[int] = set()
    for seg in [*info.segments, *later]:
        if seg.offset in seen:
            continue
        seen.add(seg.offset)
        start, end = seg.offset + 4, seg.end
        if seg.marker == 0xC4:
            p = start
            while p + 17 <= end:
                n = sum(bytes(buf[p + 1 : p + 17]))
                huff.add((buf[p] >> 4, buf[p] & 15))
                p += 17 + n
        elif seg.marker == 0xDB:
            p = start
            while p < end:
                quant.add(buf[p] & 15)
                p += 1 + (128 if buf[p] >> 4 else 64)
        elif seg.marker == 0xDA:
            _check_scan(buf, seg, huff, frame_ids, coded_dc, progressive, path)
    missing_q = sorted({c[3] for c in info.components} - quant)
    if missing_q:
        raise CorruptImage(f"JPEG quantisation table {missing_q[0]} is not defined", path=path)
    if coded_dc != frame_ids:
        raise CorruptImage("JPEG scans do not code every component of the frame", path=path)
    hmax = max(c[1] for c in info.components) or 1
    vmax = max(c[2] for c in info.components) or 1
    blocks = 0
    for _, h, v, _ in info.components:
        w = -(-info.columns * h // hmax)
        r = -(-info.rows * v // vmax)
        blocks += -(-w // 8) * -(-r // 8)
    coded = sum(entropy.values())
    # Huffman coding spends at least one bit on every block of every component (its DC
    # difference); a frame header claiming more blocks than that is forged or cut short.
    if coded * 8 < blocks:
        raise ImplausibleSize(
            f"JPEG frame claims {info.columns}x{info.rows} pixels ({blocks:,} blocks) but its "
            f"entropy-coded data ({coded:,} bytes) cannot hold them (truncated or forged header)",
            rows=info.rows,
            columns=info.columns,
            path=path,
        )


def _check_scan(
    buf: bytes | mmap.mmap,
    seg: Segment,
    huff: set[tuple[int, int]],
    frame_ids: set[int],
    coded_dc: set[int],
    progressive: bool,
    path: Path | None,
) -> None:
    p = seg.offset + 4
    ns = buf[p]
    if ns == 0 or seg.length < 2 + 2 + 1 + 2 * ns + 3:
        raise CorruptImage("JPEG scan header too short", path=path)
    comps = [(buf[p + 1 + 2 * i], buf[p + 2 + 2 * i]) for i in range(ns)]
    q = p + 1 + 2 * ns
    ss, ah = buf[q], buf[q + 2] >> 4
    for cid, tables in comps:
        if cid not in frame_ids:
            raise CorruptImage(f"JPEG scan codes component {cid}, not in the frame", path=path)
        needs_dc = ss == 0 and not (progressive and ah)
        needs_ac = not progressive or ss > 0
        if needs_dc and (0, tables >> 4) not in huff:
            raise CorruptImage(
                f"JPEG Huffman table DC {tables >> 4} is not defined before its scan", path=path
            )
        if needs_ac and (1, tables & 15) not in huff:
            raise CorruptImage(
                f"JPEG Huffman table AC {tables & 15} is not defined before its scan", path=path
            )
        if ss == 0:
            coded_dc.add(cid)
