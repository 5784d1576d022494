"""Directory record keys for a File-set (issue 21): the DICOMDIR's PATIENT, STUDY, SERIES and IMAGE
records need Type 1 keys (PS3.3 F.5) that the documented flows leave empty: a Patient ID (the
sample data, any film archive), a Study Time (everything dated by `--manifest` or
`--study-date`). As DCMTK's `dcmmkdir +I` does, what is missing is invented for the records only
(the instances are copied as they are), deterministically (the same output gives the same
DICOMDIR), and listed for the person who burns the media.
"""

from __future__ import annotations

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


def _stable(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:8].upper()


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

    name = str(ds.get("PatientName", "") or "")
    birth = str(ds.get("PatientBirthDate", "") or "")
    who = _stable("patient", name, birth) if (name or birth) else _stable("study", study_uid)
    put("PatientID", f"NOID{who}", f"no Patient ID: one per unknown patient{'' if name else ', per study'}")
    put("StudyDate", "19000101", f"no Study Date in {study}")
    put("StudyTime", "000000", f"no Study Time in {study}")
    put("StudyID", study_uid[-8:] or "1", f"no Study ID in {study}")
    put("Modality", "OT", "no Modality")
    put("SeriesNumber", 1, "no Series Number")
    put("InstanceNumber", 1, "no Instance Number")
    return keyed, invented


def image_leaf(ds: Any, keyed: Any) -> Any:
    """The IMAGE record node of `ds`, its PATIENT, STUDY and SERIES ancestors set, built from the
    keyed copy with pydicom's record definitions (for `FileSet.add_custom`)."""
    from pydicom.fileset import DIRECTORY_RECORDERS, RecordNode

    parent = None
    for record_type in ("PATIENT", "STUDY", "SERIES", IMAGE_RECORD):
        record = DIRECTORY_RECORDERS[record_type](keyed)
        record.OffsetOfTheNextDirectoryRecord = 0
        record.RecordInUseFlag = 0xFFFF
        record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
        record.DirectoryRecordType = record_type
        if "SpecificCharacterSet" in ds:
            record.SpecificCharacterSet = ds.SpecificCharacterSet
        if record_type == IMAGE_RECORD:  # its key: the instance it references
            record.ReferencedFileID = None
            record.ReferencedSOPClassUIDInFile = ds.SOPClassUID
            record.ReferencedSOPInstanceUIDInFile = ds.SOPInstanceUID
            record.ReferencedTransferSyntaxUIDInFile = ds.file_meta.TransferSyntaxUID
        node = RecordNode(record)
        if parent is not None:
            node.parent = parent
        parent = node
    return parent
