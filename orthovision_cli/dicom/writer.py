"""Write a built dataset and its pixels to a DICOM file: atomically, and streaming the pixels.

The header is serialised by pydicom; Pixel Data (always the last element) is appended by hand so
that a JPEG fragment goes from the source file to the output with `copy_file_range` (no Python
copies of 10 MB buffers) and native pixels go straight from the array's memory.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from ..defaults import TMP_PREFIX
from ..errors import OutputError
from ..types import JpegPixels, NativePixels, Pixels
from .durable import copy_range, write_all
from .iods.builders import Built

PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
ITEM_TAG = b"\xfe\xff\x00\xe0"
SEQ_DELIM = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
SMALL_RANGE = 1 << 16
# File Meta Information as pydicom writes it: (0002,0000) UL group length, (0002,0001) OB 00\01.
META_GROUP_LENGTH = b"\x02\x00\x00\x00UL\x04\x00"
META_VERSION = b"\x02\x00\x01\x00OB\x00\x00\x02\x00\x00\x00\x00\x01"
META_REQUIRED = (
    "MediaStorageSOPClassUID",
    "MediaStorageSOPInstanceUID",
    "TransferSyntaxUID",
    "ImplementationClassUID",
    "ImplementationVersionName",
)
# Transfer syntaxes whose data set is explicit VR little endian (all this writer produces).
EXPLICIT_LE_DATASETS = frozenset({"1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"})


def header_bytes_pydicom(built: Built) -> bytes:
    """The header as `pydicom.dcmwrite` writes it (the reference for `header_bytes`)."""
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, built.dataset, enforce_file_format=True)
    return buf.getvalue()


# Encoded data elements by (tag, VR, value, character set): in a series most attributes (patient,
# study, series, equipment, the view's code sequences, ...) repeat from file to file, and pydicom
# spends most of a header's ~3 ms encoding them one by one. Bounded: cleared when full.
_ENCODED: dict[tuple[int, str, Any, str], bytes] = {}
_ENCODED_MAX = 4096


def _elements(ds: Dataset) -> dict[Any, Any]:
    # The dataset's own tag -> element mapping: `ds[tag]` costs ~5 us a call in pure Python.
    elements: dict[Any, Any] = ds._dict  # type: ignore[assignment]
    return elements


def _plain(ds: Dataset) -> bool:
    """Only DataElements with settled VRs (no raw elements, no 'US or SS' for pydicom to settle
    from the dataset), at every depth: what the cached encoding handles."""
    for elem in _elements(ds).values():
        if not isinstance(elem, DataElement) or " or " in elem.VR:
            return False
        if elem.VR == "SQ" and not all(_plain(item) for item in elem.value):
            return False
    return True


def header_bytes(built: Built) -> bytes:
    """Preamble, File Meta Information and the data set (all but Pixel Data), byte for byte what
    `pydicom.dcmwrite(..., enforce_file_format=True)` writes (tested), with each repeating
    element encoded once per process instead of once per file."""
    ds = built.dataset
    meta = ds.file_meta
    ts = meta.get("TransferSyntaxUID")
    if (
        ts not in EXPLICIT_LE_DATASETS
        or "PixelData" in ds
        or not _plain(ds)
        or not _plain(meta)
        or not all(k in meta for k in META_REQUIRED)
        or 0x00020000 in meta
    ):
        return header_bytes_pydicom(built)
    meta_parts = _encode_all(meta, "iso8859")
    if 0x00020001 not in meta:  # pydicom adds File Meta Information Version 00\01
        meta_parts.insert(0, META_VERSION)
    group_length = sum(len(b) for b in meta_parts)
    head = b"\x00" * 128 + b"DICM" + META_GROUP_LENGTH + struct.pack("<I", group_length)
    return b"".join([head, *meta_parts, *_encode_all(ds, ds.get("SpecificCharacterSet", "iso8859"))])


def _value_key(elem: DataElement) -> Any:
    """What the encoding of `elem` depends on, hashable; a sequence item by item (the repr of a
    Sequence abbreviates long values, so it cannot serve as a key)."""
    value = elem.value
    if elem.VR == "SQ":
        items = tuple(
            tuple((int(t), str(e.VR), _value_key(e)) for t, e in sorted(_elements(item).items()))
            for item in value
        )
        return (items, elem.is_undefined_length)
    return (type(value).__name__, repr(value))


def _encode_all(ds: Dataset, charset: Any) -> list[bytes]:
    """Each element of `ds` in tag order, explicit VR little endian, from the cache if seen."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element

    charset_key = repr(charset)
    elements = _elements(ds)
    parts = []
    for tag in sorted(elements, key=int):
        if tag & 0xFFFF == 0 and tag >> 16 > 6:  # retired group lengths: not written
            continue
        elem = elements[tag]
        key = (int(tag), str(elem.VR), _value_key(elem), charset_key)
        data = _ENCODED.get(key)
        if data is None:
            buf = DicomBytesIO()
            buf.is_implicit_VR, buf.is_little_endian = False, True
            write_data_element(buf, elem, charset)
            data = buf.getvalue()
            if len(_ENCODED) >= _ENCODED_MAX:
                _ENCODED.clear()
            _ENCODED[key] = data
        parts.append(data)
    return parts


def _write_pixels(fd: int, pixels: Pixels, source: Path) -> None:
    px = pixels.pixels
    if isinstance(px, JpegPixels):
        length = px.length
        pad = length % 2
        write_all(
            fd,
            PIXEL_DATA_TAG
            + b"OB\x00\x00\xff\xff\xff\xff"
            + ITEM_TAG
            + b"\x00\x00\x00\x00"  # empty Basic Offset Table (one frame)
            + ITEM_TAG
            + struct.pack("<I", length + pad),
        )
        if px.data is not None:
            write_all(fd, px.data)
        else:
            assert px.ranges is not None
            src_fd = os.open(source, os.O_RDONLY)
            try:
                for a, b in px.ranges:
                    if b - a < SMALL_RANGE:  # SOI, JFIF, ICC: one read beats a kernel copy call
                        write_all(fd, os.pread(src_fd, b - a, a))
                    else:
                        copy_range(src_fd, fd, a, b)
            finally:
                os.close(src_fd)
        write_all(fd, b"\x00" * pad + SEQ_DELIM)
        return
    assert isinstance(px, NativePixels)
    arr = px.array
    if arr.dtype == np.uint16 and arr.dtype.byteorder == ">":
        arr = arr.astype("<u2")
    arr = np.ascontiguousarray(arr)
    length = arr.nbytes
    pad = length % 2
    vr = b"OW" if arr.dtype.itemsize == 2 else b"OB"
    write_all(fd, PIXEL_DATA_TAG + vr + b"\x00\x00" + struct.pack("<I", length + pad))
    write_all(fd, arr.reshape(-1).view(np.uint8).data)
    if pad:
        write_all(fd, b"\x00")


def write_temp(dest: Path, built: Built, pixels: Pixels, source: Path, *, fsync: bool = True) -> Path:
    """Write the file under a temporary name beside `dest` (not yet durable, not yet visible)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f"{TMP_PREFIX}{os.getpid()}-{dest.name}"
    head = header_bytes(built)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, head)
            _write_pixels(fd, pixels, source)
            # Start the disk write now, without waiting: the fsync in `commit` then finds
            # little left to do, and the CPU goes on with the next file meanwhile.
            if fsync and hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {dest}: {exc.strerror or exc}", path=dest) from exc
    return tmp
