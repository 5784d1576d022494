"""Directory record keys for a File-set (issue 21): the DICOMDIR's PATIENT, STUDY, SERIES and IMAGE
records need Type 1 keys (PS3.3 F.5) that the documented flows leave empty: a Patient ID (the
sample data, any film archive), a Study Time (everything dated by `--manifest` or
`--study-date`). As DCMTK's `dcmmkdir +I` does, what is missing is invented for the records only
(the instances are copied as they are), deterministically (the same output gives the same
DICOMDIR), and listed for the person who burns the media.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

IMAGE_RECORD = "IMAGE"
# What pydicom's PATIENT, STUDY, SERIES and IMAGE record definitions read from an instance.
RECORD_KEYWORDS = (
    "SpecificCharacterSet",
    "PatientName",
    "PatientID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "StudyInstanceUID",
    "StudyID",
    "AccessionNumber",
    "Modality",
    "SeriesInstanceUID",
    "SeriesNumber",
    "InstanceNumber",
)
# What the DICOMDIR needs from an instance's header (never its pixels).
HEADER_KEYWORDS = (*RECORD_KEYWORDS, "PatientBirthDate", "SOPClassUID", "SOPInstanceUID")


def _stable(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:8].upper()


def _invented_id(ds: Any) -> str:
    name = str(ds.get("PatientName", "") or "")
    birth = str(ds.get("PatientBirthDate", "") or "")
    study_uid = str(ds.get("StudyInstanceUID", "") or "")
    return "NOID" + (_stable("patient", name, birth) if (name or birth) else _stable("study", study_uid))


def invent_keys(ds: Any) -> tuple[Any, list[str]]:
    """(a header copy of `ds` whose record keys are all present, one line per invented value).

    A Patient ID is made per unknown patient: from the name and birth date where there are any,
    else from the study (never one "patient" for studies of several people). Study Date
    19000101 and Study Time 000000 as `dcmmkdir +I` invents them; Study ID from the Study
    Instance UID; Series Number and Instance Number 1; Modality OT.
    """
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset

    keyed = Dataset()  # new elements: the instance itself is copied to the media unchanged
    for keyword in RECORD_KEYWORDS:
        if keyword in ds:
            elem = ds[keyword]
            keyed[elem.tag] = DataElement(elem.tag, elem.VR, elem.value)
    invented: list[str] = []
    study_uid = str(ds.get("StudyInstanceUID", "") or "")
    study = f"study {study_uid}" if study_uid else "its study"

    def put(keyword: str, value: Any, why: str) -> None:
        if str(ds.get(keyword, "") or "").strip():
            return
        setattr(keyed, keyword, value)
        invented.append(f"{keyword} {value} ({why})")

    per_study = "" if str(ds.get("PatientName", "") or "") else ", per study"
    put("PatientID", _invented_id(ds), f"no Patient ID: one per unknown patient{per_study}")
    put("StudyDate", "19000101", f"no Study Date in {study}")
    put("StudyTime", "000000", f"no Study Time in {study}")
    put("StudyID", study_uid[-8:] or "1", f"no Study ID in {study}")
    put("Modality", "OT", "no Modality")
    put("SeriesNumber", 1, "no Series Number")
    put("InstanceNumber", 1, "no Instance Number")
    return keyed, invented


LEVELS = ("PATIENT", "STUDY", "SERIES", IMAGE_RECORD)


@functools.cache
def header_tags() -> list[int]:
    """The tags of HEADER_KEYWORDS, for `dcmread(specific_tags=...)`."""
    from pydicom.datadict import tag_for_keyword

    return [int(tag_for_keyword(k) or 0) for k in HEADER_KEYWORDS]


def _ascii(ds: Any, tag: int) -> str:
    """An ASCII-only value (UI, CS, IS) as the file has it, without converting the element
    (which costs more than reading the header): several values joined by a backslash."""
    elem = ds.get_item(tag)
    value = None if elem is None else elem.value
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip("\0 ")
    if isinstance(value, str | int | float):
        return str(value).strip()
    return "\\".join(str(v).strip() for v in value)


def level_keys(ds: Any) -> tuple[str, str, str, str]:
    """What identifies the instance's record at each level, as pydicom's FileSet keys them:
    the Patient ID (as `invent_keys` gives it), Study, Series and SOP Instance UID. Raises
    ValueError without a SOP Instance UID."""
    sop_uid = _ascii(ds, 0x00080018)
    if not sop_uid:
        raise ValueError("no SOP Instance UID")
    patient = str(ds.get("PatientID", "") or "")
    return (
        patient if patient.strip() else _invented_id(ds),
        _ascii(ds, 0x0020000D),
        _ascii(ds, 0x0020000E),
        sop_uid,
    )


def record(level: int, ds: Any, keyed: Any) -> Any:
    """The PATIENT, STUDY or SERIES record (`level` 0, 1, 2) of `ds`, its keys read from the
    keyed copy (`invent_keys`) with pydicom's record definitions (PS3.3 F.5); its offsets are
    set when written. Raises ValueError (a Type 1 key missing or empty) or AttributeError."""
    from pydicom.fileset import DIRECTORY_RECORDERS

    record_type = LEVELS[level]
    rec = DIRECTORY_RECORDERS[record_type](keyed)
    rec.DirectoryRecordType = record_type
    if "SpecificCharacterSet" in ds:
        rec.SpecificCharacterSet = ds.SpecificCharacterSet
    return rec


def image_values(ds: Any) -> tuple[tuple[str, str, str, str, str], str | None]:
    """((SOP Class UID, SOP Instance UID, Transfer Syntax UID, Specific Character Set, Instance
    Number) for the IMAGE record of `ds`, the line for an invented Instance Number or None)."""
    number = _ascii(ds, 0x00200013)
    invented = None
    if not number:
        number, invented = "1", "InstanceNumber 1 (no Instance Number)"
    sop_class = _ascii(ds, 0x00080016)
    if not sop_class:
        raise ValueError("no SOP Class UID")
    values = (
        sop_class,
        _ascii(ds, 0x00080018),
        str(ds.file_meta.TransferSyntaxUID),
        _ascii(ds, 0x00080005),
        number,
    )
    return values, invented
