"""The people and the clock of a photo session, as dicom4ortho writes them: Operators' Name,
Physician(s) of Record, Timezone Offset From UTC, from options and manifest columns; Content
Date from the capture or the study, never from the day the file was copied."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pydicom
from conftest import dciodvfy
from testdata import DATA, orthovision

PHOTO = sorted((DATA / "photos" / "faces_canada").glob("*.jpg"))[0]
LABELS = ["--no-models", "--modality", "XC", "--body-part", "HEAD", "--patient-id", "P1"]


def _convert(*args: str) -> subprocess.CompletedProcess[str]:
    return orthovision("convert", *args)


def _png_without_capture_time(tmp_path: Path) -> Path:
    from PIL import Image

    src = tmp_path / "in"
    src.mkdir()
    png = src / "scan.png"
    Image.open(PHOTO).convert("RGB").resize((160, 120)).save(png)
    os.utime(png, (1_700_000_000, 1_700_000_000))  # "copied" on 2023-11-14
    return src


def test_operator_physician_and_timezone_from_options(tmp_path: Path) -> None:
    src = _png_without_capture_time(tmp_path)
    out = tmp_path / "out"
    args = ["--operator", "Doe^Jane", "--physician-of-record", "Smith^Ann", "--timezone", "+01:00"]
    proc = _convert(str(src), "-o", str(out), *LABELS, *args, "--study-date", "2021-06-30")
    assert proc.returncode == 0, proc.stderr
    (dcm,) = sorted(out.rglob("*.dcm"))
    ds = pydicom.dcmread(dcm)
    assert str(ds.OperatorsName) == "Doe^Jane"
    assert str(ds.PhysiciansOfRecord) == "Smith^Ann"
    assert ds.TimezoneOffsetFromUTC == "+0100"
    assert ds.ContentDate == "20210630"  # the study's date, not the copy's (20231114)
    errors, _ = dciodvfy(dcm)
    assert not errors, errors


def test_the_same_from_manifest_columns(tmp_path: Path) -> None:
    src = _png_without_capture_time(tmp_path)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,PatientID,Operator,Physician of Record,Timezone,StudyDate\nscan.png,P7,Roe^Tim,Lee^Kim,-0500,2020-01-02\n"
    )
    out = tmp_path / "out"
    proc = _convert(
        str(src),
        "-o",
        str(out),
        "--no-models",
        "--modality",
        "XC",
        "--body-part",
        "HEAD",
        "--manifest",
        str(manifest),
    )
    assert proc.returncode == 0, proc.stderr
    (dcm,) = sorted(out.rglob("*.dcm"))
    ds = pydicom.dcmread(dcm)
    assert (str(ds.OperatorsName), str(ds.PhysiciansOfRecord), ds.TimezoneOffsetFromUTC) == (
        "Roe^Tim",
        "Lee^Kim",
        "-0500",
    )
    assert ds.ContentDate == "20200102"


def test_a_timezone_that_is_not_an_offset_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(PHOTO, src / "a.jpg")
    proc = _convert(str(src), "-o", str(tmp_path / "out"), *LABELS, "--timezone", "Europe/Paris")
    assert proc.returncode == 2
    assert "not an offset from UTC" in proc.stderr and "Traceback" not in proc.stderr


def test_every_patient_field_is_checked_by_its_vr() -> None:
    from orthovision_cli.dicom.plan import PATIENT_FIELDS
    from orthovision_cli.dicom.vr import PATIENT_VRS

    assert set(PATIENT_FIELDS) <= set(PATIENT_VRS)  # a new field without a VR was a KeyError
