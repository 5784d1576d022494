"""The IHE IOCM rejection note: a Key Object Selection Document (PS3.3 A.35.4, template TID 2010)
titled "Rejected for Patient Safety Reasons" (113037, DCM) that references instances a
destination holds but must no longer show (superseded by a re-run with another plan; `send
--reject-superseded`). One note per study, placed in that study, with its patient's data, as IOCM
asks; the receiving archive decides what to do with the instances it names.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from ... import __version__
from ...errors import DicomBuildError
from .modules import code_item

KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"
REJECTED_FOR_PATIENT_SAFETY = ("113037", "DCM", "Rejected for Patient Safety Reasons")
# Copied from the rejected instances: the note joins their patient and study.
PATIENT_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex")
STUDY_KEYS = ("StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber")


def build_rejection_note(
    rejected: Sequence[Dataset], sop_uid: str, series_uid: str, now: datetime | None = None
) -> Dataset:
    """A rejection note for `rejected` (headers of instances of one study: SOP Class and
    Instance UIDs, Series and Study Instance UIDs, the patient and study attributes)."""
    if not rejected:
        raise DicomBuildError("a rejection note needs at least one instance to reject")
    first = rejected[0]
    study_uid = str(first.get("StudyInstanceUID", ""))
    if not study_uid or any(str(r.get("StudyInstanceUID", "")) != study_uid for r in rejected):
        raise DicomBuildError("a rejection note references the instances of one study")
    now = now or datetime.now()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = KEY_OBJECT_SELECTION
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    for key in PATIENT_KEYS:  # Patient module: Type 2
        setattr(ds, key, first.get(key, ""))
    ds.StudyInstanceUID = study_uid  # General Study module
    for key in STUDY_KEYS:
        setattr(ds, key, first.get(key, ""))
    ds.Modality = "KO"  # Key Object Document Series module
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 9999
    ds.SeriesDescription = "Rejection note"
    ds.ReferencedPerformedProcedureStepSequence = DicomSequence()
    ds.Manufacturer = "orthovision-cli"  # General Equipment module
    ds.SoftwareVersions = __version__
    ds.InstanceNumber = 1  # Key Object Document module
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.CurrentRequestedProcedureEvidenceSequence = DicomSequence([_evidence(study_uid, rejected)])
    # SR Document Content module: the title and one IMAGE item per rejected instance.
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = DicomSequence([code_item(*REJECTED_FOR_PATIENT_SAFETY)])
    ds.ContinuityOfContent = "SEPARATE"
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "2010"
    ds.ContentTemplateSequence = DicomSequence([template])
    ds.ContentSequence = DicomSequence([_image_item(r) for r in rejected])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(KEY_OBJECT_SELECTION)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return ds


def _sop_ref(r: Dataset) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID = r.SOPClassUID
    ref.ReferencedSOPInstanceUID = r.SOPInstanceUID
    return ref


def _evidence(study_uid: str, rejected: Sequence[Dataset]) -> Dataset:
    series: dict[str, list[Dataset]] = {}
    for r in rejected:
        series.setdefault(str(r.SeriesInstanceUID), []).append(_sop_ref(r))
    study = Dataset()
    study.StudyInstanceUID = study_uid
    items = []
    for uid, refs in series.items():
        item = Dataset()
        item.SeriesInstanceUID = uid
        item.ReferencedSOPSequence = DicomSequence(refs)
        items.append(item)
    study.ReferencedSeriesSequence = DicomSequence(items)
    return study


def _image_item(r: Dataset) -> Dataset:
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "IMAGE"
    item.ReferencedSOPSequence = DicomSequence([_sop_ref(r)])
    return item
