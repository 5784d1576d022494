"""Recognise an input's format from its first bytes, never from its extension."""

from __future__ import annotations

from pathlib import Path

from ..errors import UnreadableInput

MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jpeg2000"),
    (b"\xff\x4f\xff\x51", "jpeg2000"),
    (b"BM", "bmp"),
    (b"GIF8", "gif"),
    (b"PK\x03\x04", "zip"),
    (b"%PDF", "pdf"),
)
# Names that promise an image: a file with one of these that is not a readable image fails;
# any other non-image file (notes, spreadsheets) is ignored.
IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".tif",
        ".tiff",
        ".png",
        ".jp2",
        ".j2k",
        ".jpx",
        ".bmp",
        ".gif",
        ".dcm",
        ".heic",
        ".webp",
    }
)
SUPPORTED = frozenset({"jpeg", "tiff", "png", "jpeg2000"})


def sniff_bytes(head: bytes) -> str:
    """'jpeg', 'tiff', 'png', another known name, 'dicom', 'empty' or 'unknown'."""
    if not head:
        return "empty"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    return "unknown"


def sniff(path: Path) -> str:
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError as exc:
        raise UnreadableInput(f"cannot read file: {exc.strerror or exc}", path=path) from exc
    return sniff_bytes(head)
