"""DICOM modules shared by the IOD builders, named as the standard names them (PS3.3 C.7-C.12).

Each function fills one module's attributes on a dataset. Type 2 attributes are always present
(empty where unknown); Type 1 attributes are always given a value or the builder raises.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, JPEGExtended12Bit

from ... import __version__
from ...types import Pixels, Probe
from ..plan import InstancePlan

# keyword -> (tag, VR) for the attributes BuiltDataset sets itself; None: pydicom's own way
_DIRECT: dict[str, tuple[BaseTag, str] | None] = {}
_PIXELS = frozenset({"PixelData", "FloatPixelData", "DoubleFloatPixelData"})


class BuiltDataset(Dataset):
    """A dataset we build: an attribute set by its keyword for the first time goes straight in,
    its tag and VR looked up once a process (pydicom looks up both, and checks what only a
    private, pixel or sequence element needs, each time: a file sets about a hundred, issue 25).
    The element made is the one `Dataset.__setattr__` makes; any other set goes its way."""

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            spec = _DIRECT[name]
        except KeyError:
            spec = _DIRECT[name] = _direct(name)
        if spec is None or spec[0] in self._dict:
            super().__setattr__(name, value)
        else:
            self._dict[spec[0]] = DataElement(spec[0], spec[1], value)


def _direct(name: str) -> tuple[BaseTag, str] | None:
    tag = tag_for_keyword(name) if name[:1].isupper() and name not in _PIXELS else None
    if tag is None:
        return None
    vr = dictionary_VR(tag)
    return None if vr == "SQ" or BaseTag(tag).is_private else (BaseTag(tag), vr)


PAIRED_BODY_PARTS = frozenset(
    {
        "BREAST",
        "EXTREMITY",  # a limb: left or right (dciodvfy requires Laterality for it too)
        "HAND",
        "WRIST",
        "ELBOW",
        "SHOULDER",
        "KNEE",
        "ANKLE",
        "FOOT",
        "HIP",
        "EAR",
        "EYE",
        "CLAVICLE",
        "FEMUR",
        "TIBIA",
        "FIBULA",
        "HUMERUS",
        "RADIUS",
        "ULNA",
        "FINGER",
        "TOE",
        "THUMB",
        "TMJ",
        "LEG",
        "ARM",
        "FOREARM",
        "KIDNEY",
        "LUNG",
        "HEEL",
    }
)
TRANSFER_JPEG_BASELINE = JPEGBaseline8Bit
TRANSFER_JPEG_EXTENDED = JPEGExtended12Bit
TRANSFER_EXPLICIT_LE = ExplicitVRLittleEndian


def patient_module(ds: Dataset, plan: InstancePlan) -> None:
    p = plan.input.patient
    ds.PatientName = p.patient_name
    ds.PatientID = p.patient_id
    ds.PatientBirthDate = p.birth_date
    ds.PatientSex = p.sex
    if p.age:  # Patient Study module, type 3: given at a scanning station (--confirm)
        ds.PatientAge = p.age


def general_study_module(ds: Dataset, plan: InstancePlan) -> None:
    p = plan.input.patient
    ds.StudyInstanceUID = plan.study_uid
    ds.StudyDate = plan.study_date
    ds.StudyTime = plan.study_time
    ds.ReferringPhysicianName = p.referring_physician
    ds.StudyID = plan.study_id
    ds.AccessionNumber = p.accession
    if p.physician_of_record:
        ds.PhysiciansOfRecord = p.physician_of_record
    # The user's, else the visit's (its timepoint, or its first capture: timepoints.py).
    if p.study_description or plan.study_description:
        ds.StudyDescription = fit_lo(p.study_description or plan.study_description)


def general_series_module(ds: Dataset, plan: InstancePlan, body_part: str | None) -> None:
    ds.Modality = plan.modality
    ds.SeriesInstanceUID = plan.series_uid
    ds.SeriesNumber = plan.series_number
    if plan.series_description:
        ds.SeriesDescription = plan.series_description
    if plan.input.patient.operator:
        ds.OperatorsName = plan.input.patient.operator
    if body_part:
        ds.BodyPartExamined = body_part[:16]
    # Laterality (2C): required for paired body parts unless Image Laterality is sent.
    lat = plan.input.patient.laterality
    if lat:
        ds.Laterality = lat
    elif "ImageLaterality" not in ds and (not body_part or body_part in PAIRED_BODY_PARTS):
        # Unknown side of a (possibly) paired part: present and empty, as Type 2C allows.
        ds.Laterality = ""


def general_equipment_module(ds: Dataset, plan: InstancePlan) -> None:
    exif = plan.input.probe.exif
    ds.Manufacturer = exif.make
    if exif.model:
        ds.ManufacturerModelName = exif.model
    if plan.input.patient.institution:
        ds.InstitutionName = fit_lo(plan.input.patient.institution)


def _dt(acq: datetime) -> tuple[str, str]:
    return acq.strftime("%Y%m%d"), acq.strftime("%H%M%S")


def general_image_module(
    ds: Dataset,
    plan: InstancePlan,
    pixels: Pixels,
    *,
    image_type: list[str],
    patient_orientation: list[str] | None = None,
) -> None:
    ds.InstanceNumber = plan.instance_number
    ds.PatientOrientation = patient_orientation or ""
    ds.ImageType = image_type
    acq = plan.acquired
    exif = plan.input.probe.exif
    if acq is not None:
        date, time = _dt(acq)
        frac = f".{exif.subsec}" if exif.subsec else ""
        ds.ContentDate, ds.ContentTime = date, time + frac
        ds.AcquisitionDate, ds.AcquisitionTime = date, time + frac
        ds.AcquisitionDateTime = f"{date}{time}{frac}{exif.tz_offset}"
    elif plan.input.patient.study_date:
        # No capture time, but the user dated the study (manifest, --study-date): the pixels
        # were made then, not when the file was last copied (Content Date/Time are Type 1C in
        # several IODs, so a time is needed: the study's, or midnight as DCMTK's dcmmkdir +I).
        ds.ContentDate = plan.input.patient.study_date
        ds.ContentTime = plan.study_time or "000000"
    else:
        # Nothing better: the source file's modification time (a scan's, or a copy's).
        mtime = plan.input.probe.mtime
        when = datetime.fromtimestamp(mtime) if mtime else datetime.now()
        ds.ContentDate, ds.ContentTime = _dt(when)
    if pixels.derivation:
        ds.DerivationDescription = "; ".join(pixels.derivation)[:1024]
    if pixels.lossy_source:
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = pixels.lossy_method
        ratio = _compression_ratio(pixels, plan.input.probe)
        if ratio:
            ds.LossyImageCompressionRatio = f"{ratio:.4g}"
    else:
        ds.LossyImageCompression = "00"


def _compression_ratio(pixels: Pixels, probe: Probe) -> float | None:
    uncompressed = pixels.rows * pixels.columns * pixels.samples * (pixels.bits // 8)
    compressed = pixels.pixels.length if hasattr(pixels.pixels, "length") else probe.size
    if getattr(pixels.pixels, "array", None) is not None:
        compressed = probe.size  # decoded from a JPEG: the ratio the source had
    return uncompressed / compressed if compressed else None


def image_pixel_module(ds: Dataset, pixels: Pixels, probe: Probe) -> None:
    ds.SamplesPerPixel = pixels.samples
    ds.PhotometricInterpretation = pixels.photometric
    ds.Rows = pixels.rows
    ds.Columns = pixels.columns
    ds.BitsAllocated = pixels.bits
    ds.BitsStored = pixels.bits
    ds.HighBit = pixels.bits - 1
    ds.PixelRepresentation = 0
    if pixels.samples > 1:
        ds.PlanarConfiguration = 0
    if probe.icc_profile and pixels.samples == 3:
        ds.ICCProfile = probe.icc_profile
        if len(probe.icc_profile) % 2:
            ds.ICCProfile = probe.icc_profile + b"\x00"


def sop_common_module(ds: Dataset, plan: InstancePlan) -> None:
    now = datetime.now()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = plan.sop_class_uid
    ds.SOPInstanceUID = plan.sop_uid
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    offset = plan.input.patient.timezone or plan.input.probe.exif.tz_offset
    if offset:  # the dates and times above are local to this offset
        ds.TimezoneOffsetFromUTC = offset


def contributing_equipment(ds: Dataset, provenance: str) -> None:
    """Record the conversion (and which classifier made the labels) as Contributing Equipment."""
    item = BuiltDataset()
    purpose = BuiltDataset()
    purpose.CodeValue = "109103"
    purpose.CodingSchemeDesignator = "DCM"
    purpose.CodeMeaning = "Modifying Equipment"
    item.PurposeOfReferenceCodeSequence = DicomSequence([purpose])
    item.Manufacturer = "orthovision-cli"
    item.ManufacturerModelName = "orthovision"
    item.SoftwareVersions = __version__
    item.ContributionDescription = provenance[:1024]
    item.ContributionDateTime = datetime.now().strftime("%Y%m%d%H%M%S")
    ds.ContributingEquipmentSequence = DicomSequence([item])


def fit_lo(text: str, limit: int = 64) -> str:
    """A value cut to fit an LO (or SH/CS with `limit`): the length is counted in the bytes of
    the character set (UTF-8), so a 64-character view name with a '°' must lose one more."""
    while len(text.encode("utf-8")) > limit:
        text = text[:-1]
    return text


def code_item(value: str, scheme: str, meaning: str) -> Dataset:
    item = BuiltDataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = fit_lo(meaning)
    return item
