"""Issue 21, point 7: label values are checked against the vocabulary before anything is written,
from options, manifests, decisions and remote services alike; a Patient's Name without `^` is
warned about; Protocol Name is never cut mid-word."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from testdata import DATA, run_report
from typer.testing import CliRunner

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.cli import app
from orthovision_cli.config import ConvertSettings
from orthovision_cli.errors import ExitCode, LabelError
from orthovision_cli.labels.model import Label, Labels
from orthovision_cli.labels.vet import vet_labels
from orthovision_cli.vocab.check import canonical_label, contradiction

FACE = DATA / "photos/faces_london/rest/005_03.jpg"


def _convert(tmp_path: Path, *args: str) -> tuple[int, str, Path]:
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app, ["convert", str(FACE), "-o", str(out), "-j", "1", "--on-uncertain", "convert", *args]
    )
    return res.exit_code, res.output, out


def test_an_unknown_protocol_option_is_refused_with_the_nearest_ones(tmp_path: Path) -> None:
    code, output, out = _convert(tmp_path, "--protocol", "EV99")
    assert code == ExitCode.USAGE, output
    assert "'EV99'" in output and "nearest: EV" in output
    assert not list(out.rglob("*.dcm"))
    code, output, _ = _convert(tmp_path, "--body-part", "TOOTHBRUSH")
    assert code == ExitCode.USAGE and "'TOOTHBRUSH'" in output and "nearest" in output
    # Two options that cannot both be true: refused before anything is read.
    code, output, _ = _convert(tmp_path, "--modality", "XC", "--protocol", "panoramic")
    assert code == ExitCode.USAGE and "PANORAMIC is a radiograph" in output


def test_a_radiograph_protocol_on_a_face_fails_that_file(tmp_path: Path) -> None:
    code, output, out = _convert(tmp_path, "--protocol", "panoramic", "--patient-id", "P1")
    assert code == ExitCode.FATAL, output  # the only file failed
    report = run_report(out)
    (row,) = report["files"]
    assert row["status"] == "failed" and row["reason"] == "labels"
    assert "PANORAMIC" in row["message"] and "photograph (XC)" in row["message"]
    assert not list(out.rglob("*.dcm"))


def test_synonyms_become_their_defined_terms(tmp_path: Path) -> None:
    code, output, out = _convert(
        tmp_path, "--body-part", "TEETH", "--protocol", "ev-15", "--patient-id", "P1"
    )
    assert code == ExitCode.OK, output
    (path,) = out.rglob("*.dcm")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.BodyPartExamined == "JAW"  # the vocabulary maps "teeth" to JAW
    assert "protocol=EV15" in str(ds.ContributingEquipmentSequence[0].ContributionDescription)
    # ProtocolName is the series' family: whole words, never cut at 64 bytes.
    assert ds.ProtocolName == "Orthodontic Extraoral Series"


def test_the_manifest_is_checked_by_line_and_a_name_without_caret_is_warned(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / FACE.name).write_bytes(FACE.read_bytes())
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        f"path,PatientID,PatientName,BodyPart,Protocol\n{FACE.name},7,Smith Anna,teeth,EV99\n"
    )
    settings = ConvertSettings(inputs=[inbox], output=tmp_path / "out", manifest=manifest, use_models=False)
    with pytest.raises(Exception, match=r"line 2: protocol 'EV99'.*nearest"):
        run_convert(settings)
    manifest.write_text(f"path,PatientID,PatientName,Modality,BodyPart\n{FACE.name},7,Smith Anna,XC,teeth\n")
    summary = run_convert(settings)
    assert summary.exit_code == ExitCode.OK, [r.as_dict() for r in summary.results]
    (note,) = summary.notices
    assert "line 2" in note and "'Smith Anna' has no '^'" in note and "Family^Given" in note
    report = run_report(tmp_path / "out")
    assert note in report["warnings"]
    ds = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")), stop_before_pixels=True)
    assert ds.BodyPartExamined == "JAW" and str(ds.PatientName) == "Smith Anna"  # written as given
    # The same from the option.
    code, output, _ = _convert(tmp_path, "--patient-name", "Smith Anna", "--patient-id", "7")
    assert code == ExitCode.OK and "has no '^'" in output


def test_what_a_remote_service_or_classifier_says_is_checked_too() -> None:
    said = Labels(body_part=Label("body_part", "teeth", 0.9, "remote"))
    assert vet_labels(said).value("body_part") == "JAW"
    with pytest.raises(LabelError, match=r"remote gave protocol 'EV99'.*nearest"):
        vet_labels(Labels(protocol=Label("protocol", "EV99", 0.9, "remote")))
    # A classifier's own pair is its consistency check's business; a person's word is checked.
    both = Labels(
        modality=Label("modality", "XC", 0.9, "local:model"),
        protocol=Label("protocol", "PANORAMIC", 1.0, "option"),
    )
    with pytest.raises(LabelError, match="contradict"):
        vet_labels(both)
    assert canonical_label("protocol", "opg") == "PANORAMIC"
    assert contradiction({"protocol": "EV08", "modality": "XC", "body_part": "HEAD"}) == ""
    assert "dental photograph view" in contradiction({"protocol": "IV07", "modality": "PX"})
