"""Manifests typed by hand (issue 23): every value checked by its VR before anything is written,
the row and column named; rows that match no input said, or refused with --manifest-strict;
non-ASCII names written as UTF-8 (ISO_IR 192), dciodvfy-clean."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from conftest import SAMPLE, dciodvfy, require_tool
from pydicom.dataset import Dataset
from testdata import orthovision

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings
from orthovision_cli.dicom.iods.builders import check_values
from orthovision_cli.dicom.vr import problem
from orthovision_cli.errors import ExitCode, UsageError

PHOTO = SAMPLE / "photos" / "005_03.jpg"
HEADER = "path,PatientID,PatientName,BirthDate,StudyDate,ReferringPhysician,Modality,BodyPart\n"


def _inputs(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    (src / "visit").mkdir(parents=True)
    shutil.copy(PHOTO, src / "visit" / "a.jpg")
    return src


def _manifest(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "manifest.csv"
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def _settings(src: Path, out: Path, manifest: Path, **kw: object) -> ConvertSettings:
    return ConvertSettings(inputs=[src], output=out, manifest=manifest, use_models=False, jobs=1, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("row", "says"),
    [
        ("visit/a.jpg,P1\\P2,Doe^Jane,,,,XC,HEAD", "PatientID: 'P1\\\\P2' holds a backslash"),
        ("visit/a.jpg,P1,Doe^Jane,,,Dr^" + "x" * 197 + ",XC,HEAD", "ReferringPhysicianName"),
        ("visit/a.jpg,P1," + "Family" * 25 + "^" + "Given" * 10 + ",,,,XC,HEAD", "PatientName"),
        ("visit/a.jpg,P1,Doe^Jane,,9999-12-31,,XC,HEAD", "StudyDate: 9999-12-31 is in the future"),
        ("visit/a.jpg,P1,Doe^Jane,2020-02-30,,,XC,HEAD", "2020-02-30"),
        ("visit/a.jpg,P1,Doe^Jane,2021-05-01,2020-01-01,,XC,HEAD", "PatientBirthDate: 2021-05-01 is after"),
    ],
)
def test_a_value_dicom_cannot_hold_is_refused_naming_row_and_column(
    tmp_path: Path, row: str, says: str
) -> None:
    src, out = _inputs(tmp_path), tmp_path / "out"
    manifest = _manifest(tmp_path, "visit,P0,Other^Name,,,,XC,HEAD", row)
    with pytest.raises(UsageError) as err:
        run_convert(_settings(src, out, manifest))
    assert "line 3" in err.value.message and says in err.value.message, err.value.message
    assert not list(out.rglob("*.dcm"))  # refused before anything is written


def test_the_refusal_is_one_line_and_exit_2(tmp_path: Path) -> None:
    src = _inputs(tmp_path)
    manifest = _manifest(tmp_path, "visit/a.jpg,P1\\P2,Doe^Jane,,,,XC,HEAD")
    proc = orthovision(
        "convert",
        str(src),
        "-o",
        str(tmp_path / "out"),
        "--no-models",
        "--manifest",
        str(manifest),
        timeout=120,
        env={**os.environ, "CI": ""},
    )
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert "line 2" in proc.stderr and "PatientID" in proc.stderr and "backslash" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_non_ascii_names_are_written_as_utf8_and_dciodvfy_clean(tmp_path: Path) -> None:
    src, out = _inputs(tmp_path), tmp_path / "out"
    manifest = _manifest(tmp_path, "visit/a.jpg,P-ü1,Müller^Jürgen,1990-03-04,2021-06-07,Ødegård^Åse,XC,HEAD")
    summary = run_convert(_settings(src, out, manifest))
    assert summary.exit_code == ExitCode.OK, [r.as_dict() for r in summary.results]
    (path,) = out.rglob("*.dcm")
    ds = pydicom.dcmread(path)
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert str(ds.PatientName) == "Müller^Jürgen" and str(ds.ReferringPhysicianName) == "Ødegård^Åse"
    errors, _ = dciodvfy(path)
    assert errors == []
    dump = subprocess.run([require_tool("dcmdump"), str(path)], capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0 and "Müller^Jürgen" in dump.stdout


def test_rows_that_match_no_input_are_warned_or_refused_when_strict(tmp_path: Path) -> None:
    src, out = _inputs(tmp_path), tmp_path / "out"
    manifest = _manifest(
        tmp_path,
        "visit/A.JPG,P1,Doe^Jane,,,,XC,HEAD",  # a case typo
        "visti,P1,Doe^Jane,,,,XC,HEAD",  # a folder typo
        "visit,P1,Doe^Jane,,,,XC,HEAD",  # this one matches
    )
    summary = run_convert(_settings(src, out, manifest))
    assert summary.exit_code == ExitCode.OK
    unmatched = [w for w in summary.warnings if "matches no input" in w]
    assert len(unmatched) == 2, summary.warnings
    assert "line 2" in unmatched[0] and "did you mean 'visit/a.jpg'" in unmatched[0]
    assert "line 3" in unmatched[1] and "'visti'" in unmatched[1]
    with pytest.raises(UsageError) as err:
        run_convert(_settings(src, tmp_path / "out2", manifest, manifest_strict=True))
    assert "line 2" in err.value.message and "(and 1 more)" in err.value.message
    assert not (tmp_path / "out2").exists() or not list((tmp_path / "out2").rglob("*.dcm"))


def test_every_string_of_a_built_dataset_is_checked_by_its_vr() -> None:
    ds = Dataset()
    ds.PatientName = "Doe^Jane"
    ds.Manufacturer = "Canon"
    ds.StudyDate = "20200101"
    assert check_values(ds) == ""
    ds.Manufacturer = "Can\\on"
    assert check_values(ds).startswith("Manufacturer:")
    ds.Manufacturer = "Canon"
    ds.PatientBirthDate = "20210101"
    assert "PatientBirthDate" in check_values(ds)
    assert problem("CS", "head") and problem("SH", "x" * 17) and problem("LO", "a\x1bb")
    assert problem("DA", "20230229") and not problem("DA", "20240229")
    assert not problem("ST", "line one\r\nline two") and problem("LO", "é" * 33)


def test_exif_values_dicom_cannot_hold_are_cleaned_not_written(tmp_path: Path) -> None:
    """A camera whose clock was never set (9999:12:31), a Make with a backslash and a control
    character, a Model of 80 characters: converted, dciodvfy-clean (the fuzz found the date)."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "Can\\on\x1b"
    exif[0x0110] = "m" * 80
    exif[0x8769] = {0x9003: "9999:12:31 23:59:59"}
    src = tmp_path / "in"
    src.mkdir()
    Image.open(PHOTO).convert("RGB").resize((160, 160)).save(src / "cam.jpg", "JPEG", exif=exif.tobytes())
    out = tmp_path / "out"
    summary = run_convert(
        ConvertSettings(
            inputs=[src], output=out, use_models=False, jobs=1, labels={"modality": "XC", "body_part": "HEAD"}
        )
    )
    assert summary.exit_code == ExitCode.OK, [r.as_dict() for r in summary.results]
    (path,) = out.rglob("*.dcm")
    ds = pydicom.dcmread(path)
    assert ds.StudyDate != "99991231" and ds.Manufacturer == "Can/on" and len(ds.ManufacturerModelName) == 64
    errors, _ = dciodvfy(path)
    assert errors == []
