"""Issue 21, points 5 and 6: series per modality and view family (extraoral photos, intraoral
photos, each radiograph kind), so every series-level attribute is true of all its instances;
studies split by capture day; a warning when instances have no Patient ID."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pydicom
import pytest
from conftest import dciodvfy
from PIL import Image
from testdata import DATA, run_report

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings
from orthovision_cli.errors import ExitCode

FACES = [DATA / "photos/faces_london/rest/005_03.jpg", DATA / "photos/faces_london/smile/062_08.jpg"]
INTRAORAL = [DATA / "photos/intraoral/sjtu_p0_frontal.png", DATA / "photos/intraoral/sjtu_p0_left_buccal.png"]
SERIES_LEVEL = ("Modality", "BodyPartExamined", "ProtocolName", "SeriesDescription", "SeriesNumber")


def _datasets(out: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(out.rglob("*.dcm"))]


@pytest.mark.external
def test_a_mixed_photo_set_gives_one_body_part_and_protocol_per_series(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    for p in FACES + INTRAORAL:
        (inbox / p.name).write_bytes(p.read_bytes())
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,PatientID,Modality,BodyPart,Protocol\n"
        f".,P7,XC,,\n{FACES[0].name},,,HEAD,EV08\n{FACES[1].name},,,HEAD,EV15\n"
        f"{INTRAORAL[0].name},,,MOUTH,IV07\n{INTRAORAL[1].name},,,MOUTH,IV18\n"
    )
    settings = ConvertSettings(inputs=[inbox], output=tmp_path / "out", manifest=manifest, use_models=False)
    summary = run_convert(settings)
    assert summary.exit_code == ExitCode.OK, [r.as_dict() for r in summary.results]
    datasets = _datasets(tmp_path / "out")
    assert len(datasets) == 4 and len({ds.StudyInstanceUID for ds in datasets}) == 1
    series: dict[str, list[pydicom.Dataset]] = defaultdict(list)
    for ds in datasets:
        series[str(ds.SeriesInstanceUID)].append(ds)
    assert len(series) == 2  # faces and intraoral views: one series each, not one for all seven
    for members in series.values():
        for keyword in SERIES_LEVEL:
            assert len({str(ds.get(keyword, "")) for ds in members}) == 1, (keyword, members)
    by_part = {members[0].BodyPartExamined: members for members in series.values()}
    assert set(by_part) == {"HEAD", "MOUTH"}
    assert by_part["HEAD"][0].ProtocolName == "Orthodontic Extraoral Series"
    assert by_part["MOUTH"][0].ProtocolName == "Orthodontic Intraoral Series"
    # Each photograph's own view stays with the image (its codes, the provenance).
    views = {
        str(ds.ContributingEquipmentSequence[0].ContributionDescription).split("protocol=")[1][:4]
        for ds in by_part["MOUTH"]
    }
    assert views == {"IV07", "IV18"}
    assert sorted(int(ds.SeriesNumber) for ds in datasets if ds.InstanceNumber == 1) == [1, 2]
    for path in sorted((tmp_path / "out").rglob("*.dcm")):
        errors, _ = dciodvfy(path)
        assert errors == [], (path.name, errors)


def _dated(src: Path, dest: Path, when: str) -> None:
    """A copy of a photo whose EXIF says it was taken at `when` (YYYY:MM:DD HH:MM:SS)."""
    exif = Image.Exif()
    exif[0x8769] = {0x9003: when}
    with Image.open(src) as im:
        im.save(dest, exif=exif.tobytes(), quality=90)


def test_photos_years_apart_are_two_studies_and_no_id_is_warned(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    _dated(FACES[0], inbox / "a.jpg", "2022:11:18 10:00:00")
    _dated(FACES[1], inbox / "b.jpg", "2025:02:03 09:30:00")
    labels = {"modality": "XC", "body_part": "HEAD", "protocol": "EV08"}
    with_id = run_convert(
        ConvertSettings(
            inputs=[inbox],
            output=tmp_path / "out",
            use_models=False,
            labels=labels,
            patient={"patient_id": "P9"},
        )
    )
    assert with_id.exit_code == ExitCode.OK
    datasets = _datasets(tmp_path / "out")
    assert sorted(ds.StudyDate for ds in datasets) == ["20221118", "20250203"]
    assert len({ds.StudyInstanceUID for ds in datasets}) == 2
    assert with_id.notices == []
    # Without a Patient ID: said in the summary and the report, and one unknown patient with two
    # studies too.
    no_id = run_convert(
        ConvertSettings(inputs=[inbox], output=tmp_path / "noid", use_models=False, labels=labels)
    )
    assert no_id.exit_code == ExitCode.OK
    assert any("2 instance(s) written without a Patient ID" in n for n in no_id.notices), no_id.notices
    assert any("holds 2 studies" in n for n in no_id.notices), no_id.notices
    report = run_report(tmp_path / "noid")
    assert set(no_id.notices) <= set(report["warnings"])
