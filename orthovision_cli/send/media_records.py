"""The DICOMDIR of a File-set, built in one pass (issue 25): linear in the number of instances.

Each directory record is encoded once by pydicom (Explicit VR Little Endian, its three offsets
0), kept as bytes in a PATIENT/STUDY/SERIES/IMAGE tree indexed by key (Patient ID, Study,
Series, SOP Instance UID), so an instance joins the tree in constant time. When the tree is
complete, every record's byte offset follows from the encoded lengths in one walk (PS3.3 F.3.2.1:
an offset counts from the first byte of the file, the preamble's, to the record's Item tag); the
Next and Lower-level offsets are written into the encoded records in place and the file is
written once: the header (pydicom), then the Directory Record Sequence (undefined length, each
record an Item of defined length, in depth-first order as DCMTK and pydicom write it).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, MediaStorageDirectoryStorage, generate_uid

from ..dicom.iods.builders import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION
from ..errors import OutputError

# An encoded record starts with its three lowest tags (no record has an element below them):
# (0004,1400) UL Next, (0004,1410) US In-use flag, (0004,1420) UL Lower-level; explicit VR LE.
_NEXT = b"\x04\x00\x00\x14UL\x04\x00"
_LOWER = b"\x04\x00\x20\x14UL\x04\x00"
_NEXT_AT, _LOWER_AT = 8, 30  # where their 4-byte values start
_SEQUENCE = b"\x04\x00\x20\x12SQ\x00\x00\xff\xff\xff\xff"  # (0004,1220), undefined length
_ITEM = b"\xfe\xff\x00\xe0"
_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_MAX_OFFSET = 0xFFFFFFFF


class Node:
    """A directory record (encoded) and the records below it, in the order they were added."""

    __slots__ = ("children", "keys", "made", "name", "offset", "record")

    def __init__(self, record: bytearray, name: str = "") -> None:
        self.record = record
        self.name = name  # its File ID component
        self.children: list[Node] = []
        self.made = 0  # children ever added (one taken out again leaves its name unused)
        self.keys: dict[str, Node] = {}
        self.offset = 0

    def child(self, key: str) -> Node | None:
        return self.keys.get(key)

    def add(self, key: str, record: bytearray, name: str, *, leaf: bool = False) -> Node:
        """Add the child `key`, its `record` as `encode_record` gives it."""
        node = Node(record, name)
        self.children.append(node)
        self.made += 1
        if not leaf:  # a leaf's key (its SOP Instance UID) is checked by the caller
            self.keys[key] = node
        return node


def encode_record(record: Dataset) -> bytearray:
    """`record` in Explicit VR Little Endian, its offsets 0 (filled in by `write_dicomdir`)."""
    record.OffsetOfTheNextDirectoryRecord = 0
    record.RecordInUseFlag = 0xFFFF
    record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, record)
    data = bytearray(fp.getvalue())
    if data[:8] != _NEXT or data[22:30] != _LOWER:
        raise ValueError("a directory record does not start with its offsets")  # cannot happen
    return data


def _element(tag: int, vr: bytes, text: str) -> bytes:
    """One short-VR element, Explicit VR Little Endian, padded to even length as PS3.5 says."""
    value = text.encode("ascii")  # UIDs, CS and IS: a non-ASCII value raises ValueError
    if len(value) % 2:
        value += b"\0" if vr == b"UI" else b" "
    return struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr + struct.pack("<H", len(value)) + value


_HEAD = _NEXT + b"\0" * 4 + b"\x04\x00\x10\x14US\x02\x00\xff\xff" + _LOWER + b"\0" * 4


def image_record(
    file_id: list[str], sop_class: str, sop_uid: str, syntax: str, charset: str, number: str
) -> bytearray:
    """The IMAGE record (PS3.3 F.5.18), encoded as `encode_record` encodes it, offsets 0. The one
    record made for every instance, so its few ASCII elements are encoded here directly (a test
    checks the bytes against pydicom's encoding of the same record)."""
    data = bytearray(_HEAD)
    data += _element(0x00041430, b"CS", "IMAGE")
    data += _element(0x00041500, b"CS", "\\".join(file_id))
    data += _element(0x00041510, b"UI", sop_class)
    data += _element(0x00041511, b"UI", sop_uid)
    data += _element(0x00041512, b"UI", syntax)
    if charset:
        data += _element(0x00080005, b"CS", charset)
    data += _element(0x00200013, b"IS", number)
    return data


# The PATIENT, STUDY and SERIES records' elements (PS3.3 F.5; pydicom's FileSet records them
# so): (tag, VR, Type 1: must hold a value), in tag order.
_LEVEL_ELEMENTS = (
    ((0x00100010, "PN", False), (0x00100020, "LO", True)),
    (
        (0x00080020, "DA", True),
        (0x00080030, "TM", True),
        (0x00080050, "SH", False),
        (0x00081030, "LO", False),
        (0x0020000D, "UI", True),
        (0x00200010, "SH", True),
    ),
    ((0x00080060, "CS", True), (0x0020000E, "UI", True), (0x00200011, "IS", True)),
)
_LEVEL_TYPES = ("PATIENT", "STUDY", "SERIES")


def level_records(elements: dict[int, Any], charset: str) -> list[bytearray] | None:
    """The PATIENT, STUDY and SERIES records of an instance whose header `elements` (tag: raw
    element as read) hold every key, encoded as `encode_record(record(...))` encodes them, offsets
    0: each value's bytes as the instance has them (under the same Specific Character Set), not
    decoded and encoded again (issue 25: pydicom's way is most of a File-set's CPU). None where
    a key must be invented or an element is not as expected (a converted one, another VR, an
    odd length, several values): pydicom's way then."""
    out = []
    for level, wanted in enumerate(_LEVEL_ELEMENTS):
        data = bytearray(_HEAD)
        data += _element(0x00041430, b"CS", _LEVEL_TYPES[level])
        if charset:
            data += _element(0x00080005, b"CS", charset)
        for tag, vr, required in wanted:
            elem = elements.get(tag)
            if elem is None:
                if required:
                    return None
                value: Any = b""
            else:
                value = getattr(elem, "value", None)
                if not (getattr(elem, "is_raw", False) and vr == elem.VR and isinstance(value, bytes)):
                    return None
                if len(value) % 2 or b"\\" in value or (required and not value.strip(b"\0 ")):
                    return None
            data += struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode() + struct.pack("<H", len(value))
            data += value
        out.append(data)
    return out


def _header(fileset_id: str, uid: str, first: int, last: int) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MediaStorageDirectoryStorage
    meta.MediaStorageSOPInstanceUID = UID(uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds = Dataset()
    ds.FileSetID = fileset_id
    ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity = first
    ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity = last
    ds.FileSetConsistencyFlag = 0
    fp = DicomBytesIO()
    fp.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(fp, meta, enforce_standard=True)
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return bytes(fp.getvalue())


def _preorder(root: Node) -> list[Node]:
    order: list[Node] = []
    stack = list(reversed(root.children))
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(reversed(node.children))
    return order


def write_dicomdir(root: Node, path: Path, fileset_id: str) -> int:
    """Write the DICOMDIR of the tree under `root` to `path`; the number of records."""
    order = _preorder(root)
    uid = generate_uid(prefix=None)  # a new File-set each time (2.25., from a UUID)
    start = len(_header(fileset_id, uid, 0, 0))  # the offsets' values do not change its length
    offset = start + len(_SEQUENCE)
    for node in order:
        node.offset = offset
        offset += 8 + len(node.record)
    if offset > _MAX_OFFSET:
        raise OutputError(f"the DICOMDIR would exceed 4 GiB ({len(order)} records)", path=path)
    for parent in [root, *order]:
        kids = parent.children
        for i, node in enumerate(kids):
            nxt = kids[i + 1].offset if i + 1 < len(kids) else 0
            lower = node.children[0].offset if node.children else 0
            struct.pack_into("<I", node.record, _NEXT_AT, nxt)
            struct.pack_into("<I", node.record, _LOWER_AT, lower)
    first = root.children[0].offset if root.children else 0
    last = root.children[-1].offset if root.children else 0
    header = _header(fileset_id, uid, first, last)
    if len(header) != start:
        raise ValueError("the DICOMDIR header changed length")  # cannot happen: UL values
    with path.open("wb") as f:
        f.write(header)
        f.write(_SEQUENCE)
        for node in order:
            f.write(_ITEM + struct.pack("<I", len(node.record)))
            f.write(node.record)
        f.write(_SEQUENCE_END)
        f.flush()
    return len(order)
