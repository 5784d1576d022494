"""The package DICOM code tables: against the ADA-1100 reference, in datasets, in dciodvfy."""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import require_tool
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes as dicom_codes
from pydicom.uid import ExplicitVRLittleEndian, VLPhotographicImageStorage, generate_uid
from testdata import ADA1100_REFERENCE, LABELS_CSV

from orthovision_cli.dicom.iods.views import apply_view
from orthovision_cli.types import Code
from orthovision_cli.vocab import ada1100
from orthovision_cli.vocab.ada1100 import (
    PATIENT_ORIENTATIONS,
    View,
    all_views,
    code_for,
    get_view,
    is_view,
)
from orthovision_cli.vocab.terms import (
    Protocol,
    all_body_parts,
    all_radiograph_protocols,
    body_part,
    is_modality,
    modality_code,
    normalise_phrase,
    protocol,
    radiograph_protocol,
)

REF = ADA1100_REFERENCE
CODES_DIR = Path(ada1100.__file__).resolve().parent


# --- the documented deviations from the reference (NOTICE items 1-10) ---------------------

# Keywords whose code value changed (CP-1570), and keywords new or renamed here.
CODE_CORRECTIONS = {"device_mirror": ("1332162007", "SCT")}
RENAMED_KEYWORDS = {"OrthognathicFunctionalCondition": "OrthognathicFunctionalConditions"}
NEW_KEYWORDS = {"device_contraster"}

# Per view and attribute, the value expected instead of what views.csv gives.
VIEW_CORRECTIONS: dict[tuple[str, str], object] = {
    ("IV24", "patient_orientation"): ("L", "A"),
    ("IV30", "devices"): ("1332163002",),
    ("IV20", "acquisition_context"): (("25272006", "110320000"),),
    ("EV22", "acquisition_context"): (("130325", "1336028006"), ("25272006", "110320000")),
    ("EV23", "acquisition_context"): (("130325", "1336028006"), ("25272006", "736783005")),
    ("EV24", "acquisition_context"): (("130325", "1336029003"), ("25272006", "110320000")),
    ("EV25", "acquisition_context"): (("130325", "1336029003"), ("25272006", "736783005")),
    ("EV35", "acquisition_context"): (("130325", "1336026005"),),
    ("EV35", "image_comments"): (
        "45° Left Profile (subject turns toward observer's left) - Mandible Postured Forward"
    ),
    ("EV37", "image_comments"): (
        "Other Face (viewed from above) - Superior View (showing forehead, infraorbital rim "
        "contour, dorsum of nose, upper lip, chin)"
    ),
}

# Code meanings: PS3.16 context group meanings replace SNOMED CT fully specified names.
DICOM_MEANINGS = {
    "OrthognathicFunctionalCondition": "Orthognathic Functional Condition",
    "FindingByInspection": "Finding by inspection",
    "ObservableEntity": "Observable entity",
    "DentalOcclusion": "Dental occlusion",
    "mouth_open": "Open mouth",
    "lips_relaxed": "Upper and lower lips in relaxed position",
    "lips_closed": "Upper and lower lips in closed position",
    "mpf": "Mandible postured forwards",
    "smile": "Smiles",
    "gingival_recession": "Gingival recession",
    "cant": "Cant of occlusal plane",
    "palsy": "Bell's palsy",
    "tongue_thrust": "Tongue thrust",
    "co": "Centric occlusion",
    "cr": "Centric relation",
    "right": "Right",
    "left": "Left",
    "Mouth": "Mouth",
    "HeadNeck": "Head and Neck",
    "FaceStructure": "Face",
    "OralCavityStructure": "oral cavity",
    "dental_arch_mandibular": "Mandibular dental arch",
    "dental_arch_maxillary": "Maxillary dental arch",
    "StructureOfBuccalSpace": "Buccal space",
    "frenum": "Frenulum labii",
    "device_mirror": "Intraoral photography mirror",
    "device_contraster": "Dental photography black contraster",
    "device_tongue_depressor": "Tongue blade",
    "device_ruler": "Measuring Ruler",
    "projection_frontal": "frontal",
    "projection_left": "left lateral",
    "projection_right": "right lateral",
    "projection_45deg": "45 degree projection",
    "projection_submentovertical": "submentovertical",
    "projection_vertex": "vertex",
    "projection_occlusal": "Occlusal projection",
    "image_mirrored_uncorrected": "Mirrored image uncorrected",
    "image_mirrored_corrected": "Mirrored photo image intraoral corrected",
    "closeup": "Close up photographic view of teeth without magnification",
    "image_mouth_partially_open_teeth_apart": ("Photo image with mouth partially opened and teeth apart"),
}


# --- reference readers ---------------------------------------------------------------------


def _ref_image_types() -> dict[str, tuple[str, str]]:
    with (REF / "image_types.csv").open(encoding="utf-8", newline="") as f:
        return {row[0]: (row[1], row[2]) for row in csv.reader(f) if row}


def _ref_views() -> dict[str, dict[str, str]]:
    with (REF / "views.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["keyword"]: r for r in rows if not r["keyword"].startswith("VER:")}


def _ref_codes() -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    with (REF / "codes.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["keyword"], row)
    return out


def _table_keywords() -> list[str]:
    with (CODES_DIR / "ada1100_codes.csv").open(encoding="utf-8", newline="") as f:
        return [row["keyword"] for row in csv.DictReader(f)]


def _sct_check_digit_ok(sctid: str) -> bool:
    """Verhoeff check of a SNOMED CT identifier (its last digit)."""
    d = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ]
    p = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ]
    c = 0
    for i, ch in enumerate(reversed(sctid)):
        c = d[c][p[i % 8][int(ch)]]
    return c == 0


def _every_code() -> list[Code]:
    found = [code_for(k) for k in _table_keywords()]
    found += [v.precoordinated for v in all_views() if v.precoordinated is not None]
    found += [b.code for b in all_body_parts()]
    for p in all_radiograph_protocols():
        found += [c for c in (p.view, p.procedure) if c is not None]
    return found


# --- the view table against the reference --------------------------------------------------


def test_views_are_73_in_order() -> None:
    codes = [v.code for v in all_views()]
    assert codes == [f"EV{i:02d}" for i in range(1, 44)] + [f"IV{i:02d}" for i in range(1, 31)]
    assert all(v.extraoral == v.code.startswith("EV") for v in all_views())
    assert get_view("EV01") is get_view("ev-01")  # loaded once, shared


def test_every_reference_view_has_its_mnemonic_and_meaning() -> None:
    ref = _ref_image_types()
    assert len(ref) == 73
    assert {v.code for v in all_views()} == set(ref)
    for view in all_views():
        assert (view.mnemonic, view.meaning) == ref[view.code], view.code


def test_codes_match_reference_except_cp1570() -> None:
    ref = _ref_codes()
    for keyword in _table_keywords():
        code = code_for(keyword)
        if keyword in NEW_KEYWORDS:
            assert keyword not in ref
            continue
        row = ref[RENAMED_KEYWORDS.get(keyword, keyword)]
        expected = CODE_CORRECTIONS.get(keyword, (row["code"], row["codeset"]))
        assert (code.value, code.scheme) == expected, keyword


def test_cp1570_corrections() -> None:
    assert code_for("device_mirror") == Code("1332162007", "SCT", "Intraoral photography mirror")
    assert code_for("device_contraster") == Code("1332163002", "SCT", "Dental photography black contraster")
    concept = code_for("OrthognathicFunctionalCondition")
    assert concept == Code("130325", "DCM", "Orthognathic Functional Condition")
    occlusal = Code("260499007", "SCT", "Occlusal projection")
    for code in ("IV24", "IV25", "IV26", "IV27"):
        view = get_view(code)
        assert view.view_code == occlusal
        assert view.devices == (code_for("device_mirror"),)
        assert (concept, code_for("mouth_open")) in view.acquisition_context
    assert get_view("IV30").devices == (code_for("device_contraster"),)
    assert all(d.value != "47162009" for v in all_views() for d in v.devices), "the old mirror code is gone"


def test_reference_still_has_what_was_corrected() -> None:
    # If the reference itself is fixed, the corrections (and NOTICE) need revisiting.
    ref = _ref_codes()
    assert ref["device_mirror"]["code"] == "47162009"
    views = _ref_views()
    assert views["IV24"]["PatientOrientation"] == "OrientationProneFeetToHead"
    assert views["IV20"]["AcquisitionContextSequence^DentalOcclusion"] == "cr"
    assert views["IV30"]["DeviceSequence"] == "device_periodontal_probe"


def test_code_meanings_are_dicom_meanings() -> None:
    assert {k: code_for(k).meaning for k in _table_keywords()} == DICOM_MEANINGS


def test_code_meanings_agree_with_pydicom_where_it_knows_them() -> None:
    # pydicom's tables predate CP-1570; for codes that were in DICOM before, they must agree.
    known: dict[str, set[str]] = {}
    for cid in (4, 244, 4028, 4010, 4031, 4051, 7483):
        for c in getattr(dicom_codes, f"CID{cid}").concepts.values():
            known.setdefault(c.value, set()).add(c.meaning.lower())
    checked = 0
    for keyword in _table_keywords():
        code = code_for(keyword)
        if code.value in known:
            assert code.meaning.lower() in known[code.value], keyword
            checked += 1
    assert checked >= 12


def _resolve(ref_codes: dict[str, dict[str, str]], cell: str) -> tuple[str, ...]:
    values = []
    for keyword in (k for k in cell.split("^") if k):
        row = ref_codes[keyword]
        values.append(CODE_CORRECTIONS.get(keyword, (row["code"], row["codeset"]))[0])
    return tuple(values)


def _values(codes: tuple[Code, ...]) -> tuple[str, ...]:
    return tuple(c.value for c in codes)


def test_views_match_reference_views_csv() -> None:
    ref_codes = _ref_codes()
    context_columns = (
        ("AcquisitionContextSequence^OrthognathicFunctionalConditions", "130325"),
        ("AcquisitionContextSequence^FindingByInspection", "118243007"),
        ("AcquisitionContextSequence^ObservableEntity", "363787002"),
        ("AcquisitionContextSequence^DentalOcclusion", "25272006"),
    )
    for code, row in _ref_views().items():
        view = get_view(code)
        orientation = row["PatientOrientation"]
        expected: dict[str, object] = {
            "patient_orientation": (tuple(ref_codes[orientation]["code"].split("^")) if orientation else ()),
            "image_laterality": ref_codes[row["ImageLaterality"]]["code"],
            "anatomic_region": _resolve(ref_codes, row["AnatomicRegionSequence"]),
            "anatomic_region_modifiers": _resolve(ref_codes, row["AnatomicRegionModifierSequence"]),
            "primary_anatomic_structures": tuple(
                (s, _resolve(ref_codes, row["PrimaryAnatomicStructureModifierSequence"]))
                for s in _resolve(ref_codes, row["PrimaryAnatomicStructureSequence"])
            ),
            "devices": _resolve(ref_codes, row["DeviceSequence"]),
            "view_code": _resolve(ref_codes, row["ViewCodeSequence"]),
            "view_modifiers": _resolve(ref_codes, row["ViewModifierCodeSequence"]),
            "acquisition_context": tuple(
                (concept, value)
                for column, concept in context_columns
                for value in _resolve(ref_codes, row[column])
            ),
            "image_comments": row["ImageComments"],
            "series_description": row["SeriesDescription"],
        }
        actual: dict[str, object] = {
            "patient_orientation": view.patient_orientation,
            "image_laterality": view.image_laterality,
            "anatomic_region": (view.anatomic_region.value,),
            "anatomic_region_modifiers": _values(view.anatomic_region_modifiers),
            "primary_anatomic_structures": tuple(
                (s.value, _values(m)) for s, m in view.primary_anatomic_structures
            ),
            "devices": _values(view.devices),
            "view_code": (view.view_code.value,) if view.view_code else (),
            "view_modifiers": _values(view.view_modifiers),
            "acquisition_context": tuple((c.value, v.value) for c, v in view.acquisition_context),
            "image_comments": view.image_comments,
            "series_description": view.series_description,
        }
        for attribute, value in expected.items():
            want = VIEW_CORRECTIONS.get((code, attribute), value)
            assert actual[attribute] == want, f"{code} {attribute}"


def test_corrections_really_differ_from_reference() -> None:
    # Guards against a correction entry that silently restates the reference.
    views = _ref_views()
    assert views["EV35"]["AcquisitionContextSequence^OrthognathicFunctionalConditions"] == "smile^mpf"
    assert views["EV22"]["AcquisitionContextSequence^OrthognathicFunctionalConditions"] == ""
    assert "a bove" in views["EV37"]["ImageComments"]


def _orientation(code: str) -> tuple[str, str]:
    value = get_view(code).patient_orientation
    assert len(value) == 2, code
    return value


def test_orientation_mapping_is_consistent_for_mirror_pairs() -> None:
    flip_v = {"A": "P", "P": "A", "L": "L", "R": "R", "F": "F", "H": "H"}
    flip_h = {"A": "P", "P": "A", "L": "R", "R": "L", "F": "F", "H": "H"}
    # Buccal mirror views are left-right flips of the corrected ones ...
    for raw, corrected in (("IV02", "IV03"), ("IV05", "IV06"), ("IV19", "IV20"), ("IV22", "IV23")):
        row, col = _orientation(corrected)
        assert get_view(raw).patient_orientation == (flip_h[row], col), raw
    # ... occlusal mirror views top-bottom flips.
    for raw, corrected in (("IV24", "IV25"), ("IV26", "IV27")):
        row, col = _orientation(corrected)
        assert get_view(raw).patient_orientation == (row, flip_v[col]), raw
    assert PATIENT_ORIENTATIONS["OrientationRight"] == ("A", "F")
    assert PATIENT_ORIENTATIONS["OrientationFront"] == ("L", "F")


def test_precoordinated_codes() -> None:
    assert get_view("EV01").precoordinated == Code(
        "1306623000",
        "SCT",
        "Photographic extraoral image of right half of face with lips relaxed and teeth in centric occlusion",
    )
    iv01 = get_view("IV01").precoordinated
    assert iv01 is not None and iv01.value == "1365808006"
    assert get_view("EV21").precoordinated is None
    values = [v.precoordinated.value for v in all_views() if v.precoordinated is not None]
    assert len(values) == 72
    assert len(set(values)) == 72


def test_every_sctid_is_well_formed() -> None:
    for code in _every_code():
        if code.scheme != "SCT":
            continue
        assert re.fullmatch(r"[1-9]\d{5,17}", code.value), code
        assert _sct_check_digit_ok(code.value), f"check digit of {code.value}"
        # Partition identifier: 00 (international concept) or 10 (extension concept).
        assert code.value[-3:-1] in ("00", "10"), code


def test_codes_fit_dicom_value_representations() -> None:
    for keyword in _table_keywords():
        code = code_for(keyword)
        assert len(code.value) <= 16, keyword  # CodeValue SH
        assert 0 < len(code.meaning) <= 64, keyword  # CodeMeaning LO
        assert not re.search(r"\((body structure|qualifier value|finding|disorder)\)$", code.meaning)
    for code in _every_code():
        assert len(code.value) <= 16


# --- get_view / is_view ------------------------------------------------------------------


@pytest.mark.parametrize("text", ["EV01", "ev01", "ev-01", "EV-01", "EV 1", " ev_01 "])
def test_get_view_spellings(text: str) -> None:
    assert get_view(text).code == "EV01"
    assert is_view(text)


@pytest.mark.parametrize("text", ["EV44", "IV31", "EV00", "XV01", "EV01x", "", "EO.RP.LR.CO"])
def test_get_view_unknown(text: str) -> None:
    with pytest.raises(KeyError):
        get_view(text)
    assert not is_view(text)


def test_is_view_rejects_non_text() -> None:
    assert not is_view(None)
    assert not is_view(1)


# --- apply_view ----------------------------------------------------------------------------


def _item(seq: Sequence) -> tuple[str, str, str]:
    assert len(seq) == 1
    return (seq[0].CodeValue, seq[0].CodingSchemeDesignator, seq[0].CodeMeaning)


def _context(ds: Dataset) -> list[tuple[str, str, str, str]]:
    out = []
    for item in ds.AcquisitionContextSequence:
        assert item.ValueType == "CODE"
        name, value = item.ConceptNameCodeSequence[0], item.ConceptCodeSequence[0]
        out.append((name.CodeValue, name.CodingSchemeDesignator, value.CodeValue, value.CodeMeaning))
    return out


def test_apply_view_right_profile() -> None:
    ds = Dataset()
    apply_view(ds, get_view("EV01"))
    assert list(ds.PatientOrientation) == ["A", "F"]
    assert ds.ImageLaterality == "U"
    assert ds.ImageComments.startswith("Right Profile")
    region = ds.AnatomicRegionSequence[0]
    assert _item(ds.AnatomicRegionSequence) == ("774007", "SCT", "Head and Neck")
    assert _item(region.AnatomicRegionModifierSequence) == ("24028007", "SCT", "Right")
    assert _item(ds.PrimaryAnatomicStructureSequence) == ("89545001", "SCT", "Face")
    assert "PrimaryAnatomicStructureModifierSequence" not in ds.PrimaryAnatomicStructureSequence[0]
    assert _item(ds.ViewCodeSequence) == ("399198007", "SCT", "right lateral")
    assert "ViewModifierCodeSequence" not in ds.ViewCodeSequence[0]
    assert "DeviceSequence" not in ds
    assert _context(ds) == [
        ("130325", "DCM", "1336028006", "Upper and lower lips in relaxed position"),
        ("25272006", "SCT", "110320000", "Centric occlusion"),
    ]


def test_apply_view_mirror_buccal() -> None:
    ds = Dataset()
    apply_view(ds, get_view("IV02"))
    assert list(ds.PatientOrientation) == ["P", "F"]
    assert _item(ds.AnatomicRegionSequence) == ("123851003", "SCT", "Mouth")
    assert "AnatomicRegionModifierSequence" not in ds.AnatomicRegionSequence[0]
    structure = ds.PrimaryAnatomicStructureSequence[0]
    assert _item(ds.PrimaryAnatomicStructureSequence) == ("261063000", "SCT", "Buccal space")
    assert _item(structure.PrimaryAnatomicStructureModifierSequence) == ("24028007", "SCT", "Right")
    view = ds.ViewCodeSequence[0]
    assert _item(ds.ViewCodeSequence) == ("399198007", "SCT", "right lateral")
    assert _item(view.ViewModifierCodeSequence)[0] == "789135000"
    assert _item(ds.DeviceSequence) == ("1332162007", "SCT", "Intraoral photography mirror")
    assert _context(ds) == [("25272006", "SCT", "110320000", "Centric occlusion")]


def test_apply_view_occlusal_corrected() -> None:
    ds = Dataset()
    apply_view(ds, get_view("IV25"))
    assert list(ds.PatientOrientation) == ["L", "P"]
    assert _item(ds.PrimaryAnatomicStructureSequence)[0] == "39481002"
    assert _item(ds.ViewCodeSequence) == ("260499007", "SCT", "Occlusal projection")
    assert _item(ds.ViewCodeSequence[0].ViewModifierCodeSequence)[0] == "787610003"
    assert _context(ds) == [("130325", "DCM", "262016004", "Open mouth")]


def test_apply_view_replaces_a_previous_view() -> None:
    ds = Dataset()
    apply_view(ds, get_view("IV02"))
    apply_view(ds, get_view("IV28"))  # close-up: no orientation, view code or device
    assert ds.PatientOrientation == ""
    assert "ViewCodeSequence" not in ds
    assert "DeviceSequence" not in ds
    assert _context(ds) == [("118243007", "SCT", "4356008", "Gingival recession")]
    apply_view(ds, get_view("EV40"))
    assert len(ds.AcquisitionContextSequence) == 0


def test_apply_view_long_code_value_uses_long_code_value() -> None:
    long_code = Code("1" * 17, "99TEST", "A very long code")
    view = dataclasses.replace(get_view("IV14"), devices=(long_code,))
    ds = Dataset()
    apply_view(ds, view)
    item = ds.DeviceSequence[0]
    assert item.LongCodeValue == "1" * 17
    assert "CodeValue" not in item


def test_apply_view_round_trips_through_a_file() -> None:
    ds = _vl_photographic_dataset()
    apply_view(ds, get_view("EV39"))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    back = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
    assert _item(back.DeviceSequence) == ("39802000", "SCT", "Tongue blade")
    assert [c[2] for c in _context(back)] == ["1336028006", "710793000"]


# --- dciodvfy ------------------------------------------------------------------------------


def _vl_photographic_dataset() -> Dataset:
    """A minimal VL Photographic Image (PS3.3 A.32.4) without the view attributes."""
    ds = Dataset()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = VLPhotographicImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Test^Patient"
    ds.PatientID = "P1"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = generate_uid()
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.Modality = "XC"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.Manufacturer = ""
    ds.InstanceNumber = 1
    ds.ContentDate = "20240101"
    ds.ContentTime = "120000"
    ds.AcquisitionDateTime = "20240101120000"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.LossyImageCompression = "00"
    ds.BurnedInAnnotation = "NO"
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows = 8
    ds.Columns = 8
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.zeros((8, 8, 3), np.uint8).tobytes()
    ds.PatientOrientation = ""
    ds.AcquisitionContextSequence = Sequence()
    ds.AnatomicRegionSequence = Sequence()
    return ds


def _dciodvfy(ds: Dataset, path: Path) -> list[str]:
    ds.save_as(path, enforce_file_format=True)
    # Absent dciodvfy fails under CI and skips elsewhere (conftest.require_tool).
    run = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True, check=False)
    lines = (run.stdout + run.stderr).splitlines()
    return [line.strip() for line in lines if line.startswith(("Error", "Warning"))]


# dicom3tools predates CP-1570, which put View Code Sequence into the VL Photographic Image; it
# reports that sequence and the code attributes inside it as "not present in standard IOD".
_PRE_CP1570_WARNING = re.compile(
    r"Warning - (Attribute is not present in standard DICOM IOD - \(0x0054,0x022[02]\)"
    r"|Attribute is not present in standard DICOM IOD - \(0x0008,0x010[024]\)"
    r"|Dicom dataset contains attributes not present in standard DICOM IOD)"
)


@pytest.mark.external
@pytest.mark.parametrize(
    "code", ["EV01", "EV19", "EV29", "EV39", "EV40", "IV02", "IV14", "IV25", "IV28", "IV30"]
)
def test_dciodvfy_accepts_views(code: str, tmp_path: Path) -> None:
    ds = _vl_photographic_dataset()
    apply_view(ds, get_view(code))
    messages = _dciodvfy(ds, tmp_path / f"{code}.dcm")
    assert [m for m in messages if m.startswith("Error")] == []
    assert [m for m in messages if not _PRE_CP1570_WARNING.match(m)] == []
    if get_view(code).view_code is None:
        assert messages == []


@pytest.mark.external
def test_dciodvfy_check_can_fail(tmp_path: Path) -> None:
    # The minimal dataset alone lacks its one Anatomic Region item: dciodvfy must say so.
    messages = _dciodvfy(_vl_photographic_dataset(), tmp_path / "bare.dcm")
    assert any(m.startswith("Error") and "AnatomicRegionSequence" in m for m in messages)


# Body Part Examined terms added to PS3.16 Annex L after the dicom3tools release installed here.
_NEWER_BODY_PARTS = {"MANDIBLE", "SELLA", "FOREARM"}


@pytest.mark.external
def test_dciodvfy_knows_the_body_part_terms(tmp_path: Path) -> None:
    def unrecognised(term: str) -> bool:
        ds = _vl_photographic_dataset()
        apply_view(ds, get_view("EV40"))
        ds.BodyPartExamined = term
        return any("Unrecognized defined term" in m for m in _dciodvfy(ds, tmp_path / "bp.dcm"))

    assert unrecognised("NOTABODYPART")
    unknown = {b.keyword for b in all_body_parts() if unrecognised(b.keyword)}
    assert unknown <= _NEWER_BODY_PARTS


# --- modalities ----------------------------------------------------------------------------


def test_modality_codes() -> None:
    assert modality_code("XC") == Code("XC", "DCM", "External-camera Photography")
    assert modality_code("px") == Code("PX", "DCM", "Panoramic X-Ray")
    assert modality_code(" io ") == Code("IO", "DCM", "Intra-oral Radiography")
    assert modality_code("ot").meaning == "Other"
    for value in ("DX", "CR", "MG"):
        assert is_modality(value) and is_modality(value.lower())
    assert not is_modality("XX")
    assert not is_modality(None)
    with pytest.raises(KeyError):
        modality_code("photo")


def test_modality_meanings_are_cid33_meanings() -> None:
    cid33 = {c.value: c.meaning for c in dicom_codes.CID33.concepts.values()}
    with (CODES_DIR / "modalities.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            assert modality_code(row["value"]).meaning == cid33[row["value"]]


# --- body parts ----------------------------------------------------------------------------


def test_body_part_lookup() -> None:
    tmj = body_part("TMJ")
    assert tmj.keyword == "TMJ"
    assert tmj.code == Code("53620006", "SCT", "Temporomandibular joint")
    assert body_part("tmj") is tmj
    assert body_part("Temporomandibular joint") is tmj
    assert body_part("jaw").code.value == "661005"
    assert body_part("Thorax").keyword == "CHEST"
    assert body_part("CHEST").code == Code("816094009", "SCT", "Chest")
    for unknown in ("TOOTH", "spleen", "", "PHOTO"):
        with pytest.raises(KeyError):
            body_part(unknown)


def test_body_parts_of_the_sample_data_exist() -> None:
    for keyword in ("HEAD", "MOUTH", "JAW", "CHEST", "WRIST", "BREAST", "HAND", "SKULL", "FACE"):
        assert body_part(keyword).keyword == keyword


def test_body_part_codes_agree_with_pydicom() -> None:
    known: dict[str, str] = {}
    for cid in (4031, 4):  # CID 4031 first: its meaning wins ("Chest" over CID 4's "Thorax")
        for c in getattr(dicom_codes, f"CID{cid}").concepts.values():
            known.setdefault(c.value, c.meaning)
    for part in all_body_parts():
        assert known.get(part.code.value) == part.code.meaning, part.keyword
        assert re.fullmatch(r"[A-Z0-9]{1,16}", part.keyword)


# --- radiograph protocols ------------------------------------------------------------------

PROCEDURES = {
    "PANORAMIC": ("PX", "JAW", "89846007"),
    "CEPH_LATERAL": ("DX", "SKULL", "1293073005"),
    "CEPH_PA": ("DX", "SKULL", "1293073005"),
    "BITEWING": ("IO", "JAW", "241046008"),
    "PERIAPICAL": ("IO", "JAW", None),
    "OCCLUSAL_RADIOGRAPH": ("IO", "JAW", None),
    "CHEST_PA": ("DX", "CHEST", "399208008"),
    "CHEST_AP": ("DX", "CHEST", "399208008"),
    "HAND_WRIST": ("DX", "HAND", "713027003"),
    "MAMMO_CC": ("MG", "BREAST", "71651007"),
    "MAMMO_MLO": ("MG", "BREAST", "71651007"),
}


@pytest.mark.parametrize("keyword", sorted(PROCEDURES))
def test_radiograph_protocols(keyword: str) -> None:
    p = radiograph_protocol(keyword)
    modality, part, procedure = PROCEDURES[keyword]
    assert p.keyword == keyword
    assert p.modality == modality
    assert is_modality(p.modality) and all(is_modality(m) for m in p.modalities)
    assert p.body_part is body_part(part)
    assert (p.procedure.value if p.procedure else None) == procedure
    assert p.meaning


def test_protocol_view_codes_agree_with_pydicom() -> None:
    views = {
        c.value: c.meaning
        for cid in (4010, 4014)
        for c in getattr(dicom_codes, f"CID{cid}").concepts.values()
    }
    seen = 0
    for p in all_radiograph_protocols():
        if p.view is not None:
            assert views[p.view.value] == p.view.meaning, p.keyword
            seen += 1
    assert seen >= 7
    assert radiograph_protocol("CHEST_PA").view != radiograph_protocol("CHEST_AP").view


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("pano", "PANORAMIC"),
        ("OPG", "PANORAMIC"),
        ("Orthopantomogram", "PANORAMIC"),
        ("panoramic x-ray", "PANORAMIC"),
        ("Panoramic X-Ray", "PANORAMIC"),
        ("ceph", "CEPH_LATERAL"),
        ("Lateral Ceph", "CEPH_LATERAL"),
        ("lateral_ceph", "CEPH_LATERAL"),
        ("ceph_lateral", "CEPH_LATERAL"),
        ("PA ceph", "CEPH_PA"),
        ("bite-wing", "BITEWING"),
        ("BWX", "BITEWING"),
        ("periapical", "PERIAPICAL"),
        ("occlusal radiograph", "OCCLUSAL_RADIOGRAPH"),
        ("Chest X-ray PA", "CHEST_PA"),
        ("AP chest", "CHEST_AP"),
        ("hand-wrist", "HAND_WRIST"),
        ("MLO", "MAMMO_MLO"),
        ("cranio-caudal", "MAMMO_CC"),
    ],
)
def test_radiograph_protocol_synonyms(text: str, keyword: str) -> None:
    assert radiograph_protocol(text).keyword == keyword
    found = protocol(text)
    assert isinstance(found, Protocol) and found.keyword == keyword


@pytest.mark.parametrize("text", ["chest x-ray", "x-ray", "chest PA/AP", "occlusal", "PA", "photo"])
def test_radiograph_protocol_unknown(text: str) -> None:
    with pytest.raises(KeyError):
        radiograph_protocol(text)


# --- protocol(): the one entry point ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("EV01", "EV01"),
        ("ev-01", "EV01"),
        ("EO.RP.LR.CO", "EV01"),
        ("eo.rp.lr.co", "EV01"),
        ("EV-01_EO.RP.LR.CO", "EV01"),
        ("IV-25_IO.MX.MO.OV.WM.BC", "IV25"),
        ("right profile", "EV01"),
        ("Right Profile", "EV01"),
        ("Frontal Facial view", "EV15"),
        ("frontal smile", "EV19"),
        ("Left buccal", "IV18"),
        ("upper occlusal photo", "IV25"),
        (
            "Extraoral, Full Face, Lips Closed, Centric Occlusion",
            "EV17",
        ),
    ],
)
def test_protocol_finds_views(text: str, code: str) -> None:
    found = protocol(text)
    assert isinstance(found, View)
    assert found.code == code


@pytest.mark.parametrize(
    "text",
    ["", "   ", "profile", "frontal", "chest x-ray", "EV44", "EV-01_EO.FF.LR.CO", "my holiday"],
)
def test_protocol_leaves_unknown_text_alone(text: str) -> None:
    assert protocol(text) is None


def test_view_names_and_protocol_names_do_not_collide() -> None:
    view_names = set()
    with (CODES_DIR / "view_names.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            view_names.add(normalise_phrase(row["phrase"]))
            assert protocol(row["phrase"]) == get_view(row["view"]), row["phrase"]
    for p in all_radiograph_protocols():
        for name in (p.keyword, p.meaning, *p.synonyms):
            assert normalise_phrase(name) not in view_names, name
            assert protocol(name) == p, name


def test_normalise_phrase() -> None:
    assert normalise_phrase("Frontal Facial view") == "frontal facial"
    assert normalise_phrase("Chest X-Ray, PA") == "chest x ray pa"
    assert normalise_phrase("chest xray pa") == "chest x ray pa"
    assert normalise_phrase("  The photo of  ") == ""


def test_protocol_on_the_sample_labels() -> None:
    resolved = 0
    with LABELS_CSV.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            found = protocol(row["view"])
            candidates = [c for c in row["ada1100"].split("|") if c]
            if row["modality"] == "XC" and candidates:
                # A photograph resolves to one of its candidate views, or stays text.
                assert found is None or (isinstance(found, View) and found.code in candidates)
                resolved += found is not None
            elif isinstance(found, Protocol):
                assert found.body_part.keyword == row["body_part"], row["path"]
            else:
                assert found is None, row["path"]
    assert resolved >= 30
