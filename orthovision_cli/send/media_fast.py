"""The few header elements `dicomdir` needs, found by walking the bytes of an Explicit VR Little
Endian file (issue 25: pydicom's `dcmread` costs about 0.7 ms an instance, most of a File-set's
CPU; this walk a tenth of it).

Tolerant the other way round: anything it does not expect (no preamble, another transfer syntax,
a truncated or odd element) gives None, and the caller reads the file with pydicom as before. The
elements come back as pydicom's own raw elements, exactly as `dcmread` leaves them (tested), so
what is made of them does not depend on which reader found them.
"""

from __future__ import annotations

import struct
from typing import Any

# Transfer syntaxes whose data set is Explicit VR Little Endian (not deflated).
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_ENCAPSULATED = ("1.2.840.10008.1.2.4.", "1.2.840.10008.1.2.5")
# VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
_LONG = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_TAG = struct.Struct("<HH")
_SHORT = struct.Struct("<H")
_LONG_LEN = struct.Struct("<I")


class _Odd(Exception):
    """Something this walk does not read: pydicom reads the file instead."""


def header_elements(data: bytes, wanted: frozenset[int]) -> tuple[dict[int, Any], str] | None:
    """({tag: RawDataElement} of the `wanted` top-level elements present, the Transfer Syntax
    UID) of the PS3.10 file `data` (whole, or at least its header); None where it cannot tell."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import BaseTag

    try:
        if len(data) < 132 or data[128:132] != b"DICM":
            return None
        pos, syntax = 132, None
        while pos + 8 <= len(data) and _TAG.unpack_from(data, pos)[0] == 0x0002:
            tag, vr, length, start = _element(data, pos)
            if tag == 0x00020010:
                syntax = data[start : start + length].rstrip(b"\0 ").decode("ascii")
            pos = start + length
        if syntax is None or not (syntax == _EXPLICIT_LE or syntax.startswith(_ENCAPSULATED)):
            return None
        last = max(wanted)
        found: dict[int, Any] = {}
        while pos + 8 <= len(data):
            tag, vr, length, start = _element(data, pos)
            if tag > last or tag == _PIXEL_DATA:
                break
            if length == _UNDEFINED:
                if vr != b"SQ" and vr != b"UN":
                    raise _Odd
                pos = _skip_items(data, start)
                continue
            if start + length > len(data):
                raise _Odd  # cut short: a header read in part
            if tag in wanted:
                value = data[start : start + length]
                found[tag] = RawDataElement(
                    BaseTag(tag), vr.decode("ascii"), length, value, start, False, True, True, False
                )
            pos = start + length
        else:
            if pos != len(data):
                raise _Odd  # bytes left that are not an element
        return found, syntax
    except (_Odd, struct.error, UnicodeDecodeError):
        return None


def _element(data: bytes, pos: int) -> tuple[int, bytes, int, int]:
    """(tag, VR, length, where the value starts) of the Explicit VR Little Endian element at `pos`."""
    group, elem = _TAG.unpack_from(data, pos)
    vr = data[pos + 4 : pos + 6]
    if not (len(vr) == 2 and 65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
        raise _Odd
    if vr in _LONG:
        return (group << 16) | elem, vr, _LONG_LEN.unpack_from(data, pos + 8)[0], pos + 12
    return (group << 16) | elem, vr, _SHORT.unpack_from(data, pos + 6)[0], pos + 8


def _skip_items(data: bytes, pos: int) -> int:
    """Past the sequence of undefined length whose items start at `pos`: after its delimiter."""
    while True:
        group, elem = _TAG.unpack_from(data, pos)
        tag, length = (group << 16) | elem, _LONG_LEN.unpack_from(data, pos + 4)[0]
        pos += 8
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            raise _Odd
        pos = _skip_dataset(data, pos) if length == _UNDEFINED else pos + length
        if pos > len(data):
            raise _Odd


def _skip_dataset(data: bytes, pos: int) -> int:
    """Past an item of undefined length whose elements start at `pos`: after its delimiter."""
    while True:
        group, elem = _TAG.unpack_from(data, pos)
        if (group << 16) | elem == _ITEM_END:
            return pos + 8
        _, _vr, length, start = _element(data, pos)
        pos = _skip_items(data, start) if length == _UNDEFINED else start + length
        if pos > len(data):
            raise _Odd
