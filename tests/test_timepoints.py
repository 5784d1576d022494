"""Issue 26: a visit's study says which visit it is (Study Description), and the visit's place in
treatment a person gives (`--timepoint`, `--treatment-start`, a manifest's `Timepoint`) is
written where DENT-OIP puts it (Acquisition Context: Longitudinal Temporal Event Type and
Offset from Event) and in the Study Description; outputs that do not use it keep their UIDs."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pydicom
import pytest
from conftest import dciodvfy
from test_patient_cards import FRONTAL, REST, SMILE, T0, _photo
from testdata import orthovision

from orthovision_cli.dicom.plan import PatientInfo, PlanInput, plan_batch
from orthovision_cli.dicom.records import load_records
from orthovision_cli.dicom.timepoints import describe, parse_timepoint
from orthovision_cli.labels.model import Label, Labels
from orthovision_cli.types import ExifFacts, PageFacts, Probe


def test_terms_and_descriptions() -> None:
    assert [parse_timepoint(v) for v in ("Pre-treatment", "progress", "POST_TREATMENT", "end", "")] == [
        "PRE_TREATMENT",
        "PROGRESS",
        "POST_TREATMENT",
        "FINAL",
        "",
    ]
    with pytest.raises(ValueError, match="not one of pre-treatment"):
        parse_timepoint("T1")
    assert describe("PROGRESS", "20260302", None, 120) == "Progress 2026-03-02 (day 120)"
    assert describe("INITIAL", "20260302", None, None) == "Initial 2026-03-02"
    assert describe("", "20260302", datetime(2026, 3, 2, 9, 36), None) == "Visit 2026-03-02 09:36"


def _item(name: str, minute: int, patient: PatientInfo) -> PlanInput:
    probe = Probe(
        path=Path("/card/DCIM") / name,
        format="jpeg",
        size=100,
        pages=[PageFacts(rows=10, columns=10, samples=3, bits=8, photometric="RGB")],
        exif=ExifFacts(acquired=datetime(2026, 3, 2, 9, minute), make="NIKON", model="D90"),
    )
    labels = Labels(modality=Label("modality", "XC", source="user"))
    return PlanInput(name, name, probe, labels, patient, name)


def test_uids_of_outputs_without_a_timepoint_do_not_change() -> None:
    # Planned by the release before timepoints existed (same items, same key).
    before = [
        ("2.25.105315007834844914460368379252619918256", "2.25.14901694505130321169858907370339587531"),
        ("2.25.36626645486643388415313596190038819965", "2.25.143999500644635309840734549460658982037"),
    ]
    p1 = PatientInfo(patient_id="P1")
    plans = plan_batch([_item("a", 0, p1), _item("b", 40, p1)], b"k" * 32, visit_gap=10)
    assert [(p.study_uid, p.sop_uid) for p in plans] == before
    assert [p.study_description for p in plans] == ["Visit 2026-03-02 09:00", "Visit 2026-03-02 09:40"]
    # A timepoint is another instance (its content differs), in the same study.
    progress = PatientInfo(patient_id="P1", timepoint="PROGRESS", treatment_start="20251102")
    again = plan_batch([_item("a", 0, progress)], b"k" * 32, visit_gap=10)
    assert again[0].study_uid == before[0][0] and again[0].sop_uid != before[0][1]
    assert (again[0].timepoint, again[0].timepoint_offset) == ("PROGRESS", 120)


def test_convert_writes_the_timepoint_and_describes_each_visit(tmp_path: Path) -> None:
    inbox = tmp_path / "DCIM"
    inbox.mkdir()
    v2 = T0 + timedelta(minutes=35)
    _photo(REST, inbox / "IMG_0001.jpg", T0)
    _photo(SMILE, inbox / "IMG_0002.jpg", T0 + timedelta(minutes=1))
    _photo(REST, inbox / "IMG_0003.jpg", v2)
    _photo(FRONTAL, inbox / "IMG_0004.jpg", v2 + timedelta(minutes=1))
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,Modality,Protocol,PatientID,Timepoint,TreatmentStart\n"
        "IMG_0001.jpg,XC,EV15,P1,progress,2025-11-02\n"
        "IMG_0002.jpg,XC,EV19,P1,progress,2025-11-02\n"
        "IMG_0003.jpg,XC,EV15,P2,,\n"
        "IMG_0004.jpg,XC,IV07,P2,,\n"
    )
    out = tmp_path / "out"
    proc = orthovision("convert", str(inbox), "-o", str(out), "--manifest", str(manifest), "--no-models")
    assert proc.returncode == 0, proc.stderr
    written = {p.name[:8]: p for p in out.rglob("*.dcm")}
    ds = {k: pydicom.dcmread(p) for k, p in written.items()}
    assert {k: str(d.StudyDescription) for k, d in ds.items()} == {
        "IMG_0001": "Progress 2026-03-02 (day 120)",
        "IMG_0002": "Progress 2026-03-02 (day 120)",
        "IMG_0003": "Visit 2026-03-02 09:35",
        "IMG_0004": "Visit 2026-03-02 09:35",
    }
    context = {
        str(item.ConceptNameCodeSequence[0].CodeValue): item
        for item in ds["IMG_0001"].AcquisitionContextSequence
    }
    event = context["128741"]
    assert event.ValueType == "CODE"
    assert (event.ConceptCodeSequence[0].CodeValue, event.ConceptCodeSequence[0].CodeMeaning) == (
        "121079",
        "Baseline",
    )
    days = context["128740"]
    assert days.ValueType == "NUMERIC" and float(days.NumericValue) == 120
    assert days.MeasurementUnitsCodeSequence[0].CodeValue == "d"
    assert "128741" in context and len(ds["IMG_0001"].AcquisitionContextSequence) >= 3  # the view's too
    assert not any(
        str(i.ConceptNameCodeSequence[0].CodeValue) in ("128741", "128740")
        for i in ds["IMG_0003"].AcquisitionContextSequence
    )
    # The progress visit is checked against the progress set, the other against the records set.
    report = json.loads((out / "orthovision-report.json").read_text())
    checked = {v["patient_id"]: (v["records"], v["present"], v["missing"]) for v in report["visits"]}
    assert checked["P1"] == (
        "Progress visit",
        ["frontal smiling"],
        ["intraoral frontal", "right buccal", "left buccal"],
    )
    assert checked["P2"][0] == "Orthodontic records" and "frontal smiling" in checked["P2"][2]
    assert load_records(Path("progress")).name == "Progress visit"  # --records progress
    for path in (written["IMG_0001"], written["IMG_0003"]):
        errors, warnings = dciodvfy(path)
        assert errors == [], errors
        assert not [w for w in warnings if "AcquisitionContext" in w], warnings
    # An option the user gives wins for every file; a bad one is refused before anything runs.
    proc = orthovision("convert", str(inbox), "-o", str(tmp_path / "o2"), "--timepoint", "T1", "--no-models")
    assert proc.returncode == 2 and "not one of pre-treatment" in proc.stderr
    assert "Traceback" not in proc.stderr
