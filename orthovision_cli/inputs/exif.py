"""The few EXIF facts DICOM needs: capture date/time, camera make/model, orientation.

Tolerant when reading: a broken EXIF block yields no facts, never an error (the pixels are fine).
"""

from __future__ import annotations

import re
from datetime import datetime

from PIL import Image

from ..types import ExifFacts

TAG_ORIENTATION = 0x0112
TAG_MAKE = 0x010F
TAG_MODEL = 0x0110
TAG_DATETIME = 0x0132
TAG_EXIF_IFD = 0x8769
TAG_DATETIME_ORIGINAL = 0x9003
TAG_SUBSEC_ORIGINAL = 0x9291
TAG_OFFSET_ORIGINAL = 0x9011


def _clean(value: object) -> str:
    """An EXIF text as an LO (Manufacturer, Model) can hold it: no control characters, no
    backslash (DICOM's value separator), at most 64 UTF-8 bytes."""
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    if value is None:
        return ""
    text = re.sub(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]", "", str(value)).replace("\\", "/").strip()
    while len(text.encode("utf-8", "replace")) > 64:
        text = text[:-1]
    return text.strip()


def _parse_dt(text: str) -> datetime | None:
    """The capture time, or None where there is none to believe: a camera whose clock was
    never set writes 9999:12:31 or 0000:00:00, which would become a Study Date no PACS takes."""
    text = text.strip()
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            when = datetime.strptime(text[:19] if "S" in fmt else text[:16], fmt)
        except ValueError:
            continue
        return when if 1850 <= when.year <= datetime.now().year + 1 else None
    return None


def facts_from_exif(exif: Image.Exif | None) -> ExifFacts:
    if exif is None:
        return ExifFacts()
    try:
        ifd = exif.get_ifd(TAG_EXIF_IFD)
    except Exception:  # a broken sub-IFD must not fail the image
        ifd = {}
    raw_dt = _clean(ifd.get(TAG_DATETIME_ORIGINAL) or exif.get(TAG_DATETIME) or "")
    acquired = _parse_dt(raw_dt) if raw_dt else None
    subsec = re.sub(r"\D", "", _clean(ifd.get(TAG_SUBSEC_ORIGINAL, "")))[:6]
    tz = ""
    m = re.fullmatch(r"([+-])(\d\d):?(\d\d)", _clean(ifd.get(TAG_OFFSET_ORIGINAL, "")))
    if m:
        tz = f"{m.group(1)}{m.group(2)}{m.group(3)}"
    try:
        orientation = int(exif.get(TAG_ORIENTATION, 1))
    except (TypeError, ValueError):
        orientation = 1
    if orientation not in range(1, 9):
        orientation = 1
    return ExifFacts(
        acquired=acquired,
        subsec=subsec,
        tz_offset=tz,
        make=_clean(exif.get(TAG_MAKE, "")),
        model=_clean(exif.get(TAG_MODEL, "")),
        orientation=orientation,
    )


def facts_from_bytes(tiff_block: bytes | None) -> ExifFacts:
    """Facts from a JPEG APP1 Exif payload (the TIFF structure after 'Exif\\0\\0')."""
    if not tiff_block:
        return ExifFacts()
    exif = Image.Exif()
    try:
        exif.load(b"Exif\x00\x00" + tiff_block)
    except Exception:
        return ExifFacts()
    return facts_from_exif(exif)
