"""One typed builder per IOD. A builder returns a dataset (all but Pixel Data) only when it is
valid for its IOD; otherwise it raises DicomBuildError. Strict when writing."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom import config
from pydicom.datadict import dictionary_VM
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag
from pydicom.uid import UID
from pydicom.valuerep import PersonName

from ... import __version__
from ...errors import DicomBuildError
from ...types import JpegPixels, Pixels, Probe
from ...vocab import ada1100
from ...vocab.ada1100 import View
from .. import timepoints
from ..plan import (
    MF_GRAYSCALE_BYTE_SC,
    MF_GRAYSCALE_WORD_SC,
    MF_TRUE_COLOR_SC,
    PHOTO_MODALITIES,
    SECONDARY_CAPTURE,
    VL_PHOTOGRAPHIC,
    InstancePlan,
)
from ..vr import MAX_BYTES, problem
from . import modules as m
from .views import add_timepoint, apply_view

IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1573.1"  # orthovision-cli's implementation
IMPLEMENTATION_VERSION = f"ORTHOVISION_{__version__}"[:16]


@dataclass(frozen=True)
class Built:
    dataset: Dataset
    transfer_syntax: str


def transfer_syntax_for(pixels: Pixels) -> str:
    if isinstance(pixels.pixels, JpegPixels):
        if pixels.pixels.info.process == "extended":
            return m.TRANSFER_JPEG_EXTENDED
        return m.TRANSFER_JPEG_BASELINE
    return m.TRANSFER_EXPLICIT_LE


def _file_meta(plan: InstancePlan, ts: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(plan.sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(plan.sop_uid)
    meta.TransferSyntaxUID = UID(ts)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    return meta


def _provenance(plan: InstancePlan) -> str:
    parts = [f"Converted from {plan.input.probe.format.upper()} by orthovision-cli {__version__}"]
    for lab in plan.input.labels:
        if lab.known:
            parts.append(f"{lab.tag}={lab.value} ({lab.source}, {lab.confidence:.2f})")
    return "; ".join(parts)


def _view(plan: InstancePlan) -> View | None:
    protocol = plan.input.labels.value("protocol")
    if not protocol:
        return None
    try:
        return ada1100.get_view(protocol)
    except KeyError:
        return None


def _body_part(plan: InstancePlan) -> str | None:
    value = plan.input.labels.value("body_part")
    return value.upper() if value else None


def _protocol_name(ds: Dataset, plan: InstancePlan, view: View | None) -> None:
    """Protocol Name is a series attribute (General Series module): the series' family, the same
    for every instance of it; each photograph's own view is in its View Code Sequence and Image
    Comments."""
    if plan.protocol_name:
        ds.ProtocolName = m.fit_lo(plan.protocol_name)


def _common(
    ds: Dataset,
    plan: InstancePlan,
    pixels: Pixels,
    body_part: str | None,
    image_type: list[str],
    orientation: list[str] | None,
) -> None:
    probe = plan.input.probe
    m.sop_common_module(ds, plan)
    m.patient_module(ds, plan)
    m.general_study_module(ds, plan)
    m.general_equipment_module(ds, plan)
    m.general_image_module(ds, plan, pixels, image_type=image_type, patient_orientation=orientation)
    m.image_pixel_module(ds, pixels, probe)
    m.general_series_module(ds, plan, body_part)
    m.contributing_equipment(ds, _provenance(plan))


def build_vl_photographic(plan: InstancePlan, pixels: Pixels) -> Built:
    """VL Photographic Image (PS3.3 A.33.4), Modality XC."""
    if pixels.bits != 8:
        raise DicomBuildError("VL Photographic Image needs 8-bit pixels", path=plan.input.probe.path)
    ds = m.BuiltDataset()
    view = _view(plan)
    image_type = ["DERIVED" if pixels.derivation else "ORIGINAL", "PRIMARY"]
    ds.AcquisitionContextSequence = DicomSequence([])
    if view is not None:
        apply_view(ds, view)
    if plan.timepoint in timepoints.TIMEPOINTS:
        add_timepoint(ds, timepoints.TIMEPOINTS[plan.timepoint].event, plan.timepoint_offset)
    orientation = None
    if "PatientOrientation" in ds and ds.PatientOrientation:
        orientation = list(ds.PatientOrientation)
    body_part = _body_part(plan)
    _common(ds, plan, pixels, body_part, image_type, orientation)
    _protocol_name(ds, plan, view)
    if pixels.photometric.startswith("MONOCHROME"):
        # VL Image module: a VOI window is required for monochrome images.
        ds.WindowCenter = 2 ** (pixels.bits - 1)
        ds.WindowWidth = 2**pixels.bits
    ds.BurnedInAnnotation = "NO"
    if view is not None:
        ds.RecognizableVisualFeatures = "YES" if view.code.upper().startswith("EV") else "NO"
    return _finish(ds, plan, pixels, required=VL_REQUIRED)


def build_secondary_capture(plan: InstancePlan, pixels: Pixels) -> Built:
    """Secondary Capture Image (A.8.1) or a multi-frame SC IOD (A.8.3-A.8.5), Conversion Type DF."""
    ds = m.BuiltDataset()
    probe = plan.input.probe
    image_type = ["DERIVED", "SECONDARY"]
    body_part = _body_part(plan)
    _common(ds, plan, pixels, body_part, image_type, None)
    _protocol_name(ds, plan, None)
    # DF (digitised film) only where the scan resolution is known: DF requires Nominal Scanned
    # Pixel Spacing. Otherwise the image came through a workstation (WSD).
    ds.ConversionType = "DF" if probe.dpi else "WSD"
    ds.SecondaryCaptureDeviceManufacturer = "orthovision-cli"
    ds.SecondaryCaptureDeviceSoftwareVersions = __version__
    # Film labels may carry names: a viewer and a de-identifier must treat the pixels as such.
    ds.BurnedInAnnotation = "YES"
    if probe.dpi:
        xdpi, ydpi = probe.dpi
        # Nominal Scanned Pixel Spacing: row spacing (vertical) \ column spacing (horizontal), mm.
        row_mm, col_mm = 25.4 / ydpi, 25.4 / xdpi
        if pixels.orientation_applied.rotate in (90, 270):
            row_mm, col_mm = col_mm, row_mm
        ds.NominalScannedPixelSpacing = [f"{row_mm:.6g}", f"{col_mm:.6g}"]
    if plan.sop_class_uid in (MF_GRAYSCALE_BYTE_SC, MF_GRAYSCALE_WORD_SC, MF_TRUE_COLOR_SC):
        ds.NumberOfFrames = pixels.frames
        if pixels.frames > 1:
            ds.FrameIncrementPointer = 0x00181063
            ds.FrameTime = 0
        if plan.sop_class_uid != MF_TRUE_COLOR_SC:
            ds.PresentationLUTShape = "IDENTITY"
            ds.RescaleIntercept = 0
            ds.RescaleSlope = 1
            ds.RescaleType = "US"
    elif pixels.photometric.startswith("MONOCHROME") and pixels.bits > 8:
        ds.WindowCenter = 2 ** (pixels.bits - 1)
        ds.WindowWidth = 2**pixels.bits
    return _finish(ds, plan, pixels, required=SC_REQUIRED)


VL_REQUIRED = (
    "ImageType",
    "Modality",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PhotometricInterpretation",
    "Rows",
    "Columns",
)
SC_REQUIRED = (*VL_REQUIRED, "ConversionType")


BACKSLASH = "\\"


def check_values(ds: Dataset) -> str:
    """The first value of `ds` (and its sequences) that its VR cannot hold, as
    'Keyword: why'; empty when every one fits (`vr.problem`)."""
    for elem in ds.iterall():
        if elem.VR not in MAX_BYTES or elem.VR in ("DS", "IS") or elem.value is None:
            continue
        values = elem.value if isinstance(elem.value, MultiValue | list) else [elem.value]
        if len(values) > 1 and _single_valued(elem.tag):  # pydicom split it at a backslash
            joined = BACKSLASH.join(map(str, values))
            return f"{elem.keyword}: {joined!r} holds a backslash, DICOM's value separator"
        for value in values:
            why = problem(elem.VR, str(value)) if isinstance(value, str | PersonName) else ""
            if why:
                return f"{elem.keyword or elem.tag}: {why}"
    birth, study = str(ds.get("PatientBirthDate", "")), str(ds.get("StudyDate", ""))
    if birth and study and birth > study:
        return f"PatientBirthDate {birth} is after StudyDate {study}"
    return ""


def _single_valued(tag: BaseTag) -> bool:
    try:
        return dictionary_VM(tag) == "1"
    except KeyError:  # a private or unknown element: its VM is not ours to judge
        return False


def _finish(ds: Dataset, plan: InstancePlan, pixels: Pixels, required: tuple[str, ...]) -> Built:
    for keyword in required:
        if keyword not in ds or ds[keyword].value in (None, "", []):
            raise DicomBuildError(f"{keyword} (Type 1) has no value", path=plan.input.probe.path)
    bad = check_values(ds)  # whatever the source (EXIF, labels, options): never written wrong
    if bad:
        raise DicomBuildError(bad, path=plan.input.probe.path)
    if plan.sop_class_uid == VL_PHOTOGRAPHIC and ds.Modality not in PHOTO_MODALITIES:
        raise DicomBuildError(f"modality {ds.Modality} in a VL Photographic Image")
    ts = transfer_syntax_for(pixels)
    ds.file_meta = _file_meta(plan, ts)
    return Built(ds, ts)


def build(plan: InstancePlan, pixels: Pixels) -> Built:
    # pydicom's own check of each value as it is set is a tenth of a file's CPU; `check_values`
    # checks every value we write once the dataset is built (and refuses the file), so it is
    # off meanwhile. (Two threads building at once may leave it off in that process: reading
    # stays tolerant, writing stays checked by check_values.)
    with config.disable_value_validation():
        return _build(plan, pixels)


def _build(plan: InstancePlan, pixels: Pixels) -> Built:
    if plan.sop_class_uid == VL_PHOTOGRAPHIC:
        return build_vl_photographic(plan, pixels)
    if plan.sop_class_uid in (
        SECONDARY_CAPTURE,
        MF_GRAYSCALE_BYTE_SC,
        MF_GRAYSCALE_WORD_SC,
        MF_TRUE_COLOR_SC,
    ):
        return build_secondary_capture(plan, pixels)
    raise DicomBuildError(f"no builder for SOP Class {plan.sop_class_uid}")


__all__ = ["Built", "Probe", "build", "build_secondary_capture", "build_vl_photographic"]
