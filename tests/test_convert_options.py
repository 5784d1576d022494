"""Patient, study and label data from options, a manifest and a path template; grouping,
numbering and UIDs."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pydicom
import pytest
from conftest import SAMPLE, VIEW_CODE_WARNING, dciodvfy
from typer.testing import CliRunner

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.cli import app
from orthovision_cli.config import ConvertSettings
from orthovision_cli.errors import ExitCode, UsageError

PHOTOS = SAMPLE / "photos"


def _datasets(out: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(out.rglob("*.dcm"))]


def _copy(names: list[str], dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for n in names:
        shutil.copy(PHOTOS / n, dest / n)
    return dest


def test_options_fill_patient_and_study(tmp_path: Path) -> None:
    src = _copy(["005_03.jpg"], tmp_path / "in")
    settings = ConvertSettings(
        inputs=[src],
        output=tmp_path / "out",
        use_models=False,
        patient={
            "patient_id": "P-77",
            "patient_name": "Doe, Jane",
            "birth_date": "2011-02-03",
            "sex": "female",
            "study_date": "2024-05-06",
            "accession": "ACC9",
            "study_description": "Initial records",
            "institution": "Smile Clinic",
        },
        labels={"modality": "XC", "protocol": "EV15", "body_part": "HEAD"},
    )
    assert run_convert(settings).exit_code == ExitCode.OK
    (ds,) = _datasets(tmp_path / "out")
    assert ds.PatientID == "P-77"
    assert str(ds.PatientName) == "Doe^Jane"
    assert ds.PatientBirthDate == "20110203" and ds.PatientSex == "F"
    assert ds.StudyDate == "20240506" and ds.AccessionNumber == "ACC9"
    assert ds.StudyDescription == "Initial records"
    assert ds.InstitutionName == "Smile Clinic"
    assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert ds.Modality == "XC" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.77.1.4"
    assert ds.ProtocolName == "Orthodontic Extraoral Series"  # the series' family (issue 21)
    assert "protocol=EV15" in str(ds.ContributingEquipmentSequence[0].ContributionDescription)


def test_manifest_rows_for_folders_and_files(tmp_path: Path) -> None:
    _copy(["005_03.jpg", "005_08.jpg"], tmp_path / "in" / "anna")
    _copy(["sjtu_p0_frontal.png"], tmp_path / "in" / "ben")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path;PatientID;PatientName;StudyDate;Modality;BodyPart;Protocol\n"
        "anna;A1;Anna^A;2023-01-02;XC;HEAD;\n"
        "anna/005_08.jpg;;;;;;EV19\n"
        "ben;B2;Ben^B;2023-03-04;XC;MOUTH;IV07\n",
        encoding="utf-8",
    )
    settings = ConvertSettings(
        inputs=[tmp_path / "in"], output=tmp_path / "out", manifest=manifest, use_models=False
    )
    assert run_convert(settings).exit_code == ExitCode.OK
    by_id: dict[str, list[pydicom.Dataset]] = {}
    for ds in _datasets(tmp_path / "out"):
        by_id.setdefault(ds.PatientID, []).append(ds)
    assert sorted(by_id) == ["A1", "B2"]
    anna = {ds.get("ProtocolName", "") for ds in by_id["A1"]}
    assert anna == {"", "Orthodontic Extraoral Series"}  # one with a view, one without: two series
    assert len({ds.SeriesInstanceUID for ds in by_id["A1"]}) == 2
    assert {ds.StudyDate for ds in by_id["A1"]} == {"20230102"}
    assert len({ds.StudyInstanceUID for ds in by_id["A1"]} | {by_id["B2"][0].StudyInstanceUID}) == 2


def test_bad_manifest_is_a_usage_error(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,PatientID,Colour\nx.jpg,1,red\n")
    with pytest.raises(UsageError, match="unknown column"):
        run_convert(
            ConvertSettings(inputs=[PHOTOS], output=tmp_path / "o", manifest=manifest, use_models=False)
        )
    manifest.write_text("path,BirthDate\nx.jpg,yesterday\n")
    result = CliRunner().invoke(
        app, ["convert", str(PHOTOS), "-o", str(tmp_path / "o2"), "--manifest", str(manifest), "--no-models"]
    )
    assert result.exit_code == ExitCode.USAGE
    assert "line 2" in result.output and "Traceback" not in result.output


def test_path_template_reads_patient_and_date(tmp_path: Path) -> None:
    _copy(["005_03.jpg"], tmp_path / "in" / "P123" / "2022-09-10")
    _copy(["005_08.jpg"], tmp_path / "in" / "P456" / "2021-01-01")
    settings = ConvertSettings(
        inputs=[tmp_path / "in"],
        output=tmp_path / "out",
        use_models=False,
        path_template="{PatientID}/{StudyDate}/*",
        labels={"modality": "XC", "body_part": "HEAD"},
    )
    assert run_convert(settings).exit_code == ExitCode.OK
    got = sorted((ds.PatientID, ds.StudyDate) for ds in _datasets(tmp_path / "out"))
    assert got == [("P123", "20220910"), ("P456", "20210101")]


def test_uids_stable_on_rerun_and_secret_per_output(tmp_path: Path) -> None:
    src = _copy(["005_03.jpg", "005_08.jpg"], tmp_path / "in")
    base = dict(
        inputs=[src],
        use_models=False,
        patient={"patient_id": "P1"},
        labels={"modality": "XC", "body_part": "HEAD"},
    )
    run_convert(ConvertSettings(output=tmp_path / "a", **base))  # type: ignore[arg-type]
    first = {ds.SOPInstanceUID for ds in _datasets(tmp_path / "a")}
    run_convert(ConvertSettings(output=tmp_path / "a", force=True, **base))  # type: ignore[arg-type]
    again = {ds.SOPInstanceUID for ds in _datasets(tmp_path / "a")}
    assert first == again and len(first) == 2
    run_convert(ConvertSettings(output=tmp_path / "b", **base))  # type: ignore[arg-type]
    other = {ds.SOPInstanceUID for ds in _datasets(tmp_path / "b")}
    assert not (first & other)  # another output tree: another secret, unrelated UIDs
    for uid in first | other:
        assert uid.startswith("2.25.") and len(uid) <= 64
    # Nothing in the UIDs derives from the patient ID without the secret.
    assert not any("P1" in uid for uid in first)


def test_grouping_and_instance_order(tmp_path: Path) -> None:
    src = _copy(["005_03.jpg", "005_08.jpg", "sample_NikonD90.JPG"], tmp_path / "in")
    (SAMPLE / "radiographs" / "19073f37.png").resolve()
    shutil.copy(SAMPLE / "radiographs" / "19073f37.png", src / "chest.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,Modality,BodyPart\nchest.png,CR,CHEST\n")
    settings = ConvertSettings(
        inputs=[src],
        output=tmp_path / "out",
        use_models=False,
        manifest=manifest,
        patient={"patient_id": "P1", "study_date": "2024-01-01"},
        labels={},
    )
    settings.labels = {}
    # Photos get XC from a folder-wide default: only the chest row says otherwise.
    manifest.write_text("path,Modality,BodyPart\n.,XC,HEAD\nchest.png,CR,CHEST\n")
    assert run_convert(settings).exit_code == ExitCode.OK
    dss = _datasets(tmp_path / "out")
    assert len({ds.StudyInstanceUID for ds in dss}) == 1
    series: dict[tuple[str, str], list[Any]] = {}
    for ds in dss:
        series.setdefault((ds.Modality, ds.get("ManufacturerModelName", "")), []).append(ds)
    # Photos from two cameras and a radiograph: three series, numbered 1..3.
    assert len(series) == 3
    assert sorted(int(ds.SeriesNumber) for ds in dss if ds.InstanceNumber == 1) == [1, 2, 3]
    for members in series.values():
        assert sorted(int(ds.InstanceNumber) for ds in members) == list(range(1, len(members) + 1))


@pytest.mark.external
def test_dental_view_is_coded_and_valid(tmp_path: Path) -> None:
    src = _copy(["005_08.jpg"], tmp_path / "in")
    settings = ConvertSettings(
        inputs=[src],
        output=tmp_path / "out",
        use_models=False,
        patient={"patient_id": "P1", "study_date": "2024-01-01"},
        labels={"modality": "XC", "protocol": "EV19", "body_part": "HEAD"},
    )
    assert run_convert(settings).exit_code == ExitCode.OK
    path = next((tmp_path / "out").rglob("*.dcm"))
    ds = pydicom.dcmread(path)
    assert ds.ProtocolName == "Orthodontic Extraoral Series"
    assert ds.AnatomicRegionSequence[0].CodingSchemeDesignator == "SCT"
    assert ds.ImageLaterality == "U"
    assert list(ds.PatientOrientation) == ["L", "F"]
    meanings = {
        item.ConceptCodeSequence[0].CodeMeaning.lower()
        for item in ds.AcquisitionContextSequence
        if "ConceptCodeSequence" in item
    }
    assert any("smil" in m for m in meanings)
    errors, warnings = dciodvfy(path, allow=(VIEW_CODE_WARNING,))
    assert errors == [] and warnings == []
    assert ds.ViewCodeSequence[0].CodeValue == "399033003"  # frontal


@pytest.mark.parametrize("body_part", ["EXTREMITY", "HAND", "BREAST", "CHEST", "SKULL"])
def test_laterality_for_paired_body_parts_is_valid(tmp_path: Path, body_part: str) -> None:
    """Laterality (Type 2C) is present, empty when unknown, for a paired body part such as a
    limb film, and absent for an unpaired one: dciodvfy finds no error either way."""
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(SAMPLE / "radiographs" / "IMG0003297.jpg", src / "film.jpg")
    out = tmp_path / "out"
    settings = ConvertSettings(
        inputs=[src], output=out, use_models=False, labels={"modality": "DX", "body_part": body_part}
    )
    assert run_convert(settings).exit_code == ExitCode.OK
    (path,) = sorted(out.rglob("*.dcm"))
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.BodyPartExamined == body_part
    assert ("Laterality" in ds) == (body_part in ("EXTREMITY", "HAND", "BREAST"))
    errors, _ = dciodvfy(path)
    assert errors == []
