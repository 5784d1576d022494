"""Issue 26: a camera card cut into visits (capture sessions) by capture time and camera, each
visit a study of its own."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pydicom
import pytest
from PIL import Image
from testdata import DATA

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings
from orthovision_cli.dicom.plan import PatientInfo, PlanInput, capture_sessions, plan_batch
from orthovision_cli.dicom.records import incomplete_line, load_records, visits
from orthovision_cli.errors import ExitCode, UsageError
from orthovision_cli.labels.model import Label, Labels
from orthovision_cli.types import ExifFacts, PageFacts, Probe

FACE = DATA / "photos/faces_london/rest/005_03.jpg"
T0 = datetime(2026, 3, 2, 9, 0, 0)


def _item(name: str, minutes: float | None, modality: str = "XC", model: str = "D90") -> PlanInput:
    acquired = T0 + timedelta(minutes=minutes) if minutes is not None else None
    probe = Probe(
        path=Path("/card/DCIM") / name,
        format="jpeg",
        size=100,
        pages=[PageFacts(rows=10, columns=10, samples=3, bits=8, photometric="RGB")],
        exif=ExifFacts(acquired=acquired, make="NIKON", model=model),
    )
    labels = Labels(modality=Label("modality", modality, source="user"))
    return PlanInput(name, name, probe, labels, PatientInfo(), name)


def _names(sessions: list[list[PlanInput]]) -> list[list[str]]:
    return [[i.rel for i in s] for s in sessions]


def test_sessions_are_cut_by_gap_and_camera() -> None:
    items = [
        _item("a", 0),
        _item("b", 3),
        _item("c", 13),  # 10 minutes after b: not more than the gap
        _item("d", 23.5),  # 10.5 minutes: a new visit
        _item("e", 24, model="Z6"),  # another camera: a new visit
        _item("f", 25, model="Z6"),
        _item("x", 1, modality="PX"),  # a radiograph: not cut
        _item("u", None),  # no capture time: not cut
    ]
    assert _names(capture_sessions(items, 10)) == [["a", "b", "c"], ["d"], ["e", "f"]]
    assert _names(capture_sessions(list(reversed(items)), 10)) == [["a", "b", "c"], ["d"], ["e", "f"]]
    assert _names(capture_sessions(items, 0)) == [["a", "b", "c", "d", "e", "f"]]


def test_each_visit_is_a_study_and_the_first_keeps_the_day() -> None:
    items = [_item("a", 0), _item("b", 3), _item("d", 40), _item("x", 1, modality="PX"), _item("u", None)]
    study = {p.input.rel: p.study_uid for p in plan_batch(items, b"k", visit_gap=10)}
    assert study["a"] == study["b"] == study["x"] == study["u"] != study["d"]
    # The first visit keeps the UID the day had without the cut.
    off = {p.input.rel: p.study_uid for p in plan_batch(items, b"k", visit_gap=0)}
    assert len(set(off.values())) == 1 and off["a"] == study["a"]
    times = {p.input.rel: p.study_time for p in plan_batch(items, b"k", visit_gap=10)}
    assert times["d"] == "094000" and times["a"] == "090000"


def test_a_study_date_the_user_gave_is_not_cut() -> None:
    items = [_item("a", 0), _item("d", 40)]
    items = [
        PlanInput(i.key, i.rel, i.probe, i.labels, PatientInfo(study_date="20260302"), i.content_hash)
        for i in items
    ]
    assert len({p.study_uid for p in plan_batch(items, b"k", visit_gap=10)}) == 1


def _dated(dest: Path, when: datetime) -> None:
    exif = Image.Exif()
    exif[0x8769] = {0x9003: when.strftime("%Y:%m:%d %H:%M:%S")}
    with Image.open(FACE) as im:
        im.save(dest, exif=exif.tobytes(), quality=90)


def test_convert_writes_a_study_per_visit_and_visit_gap_0_turns_it_off(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    for i, minutes in enumerate([0, 2, 30, 31, 90]):
        _dated(inbox / f"IMG_{i}.jpg", T0 + timedelta(minutes=minutes))
    labels = {"modality": "XC", "body_part": "HEAD", "protocol": "EV15"}

    def studies(out: Path, gap: int) -> dict[str, str]:
        settings = ConvertSettings(
            inputs=[inbox], output=out, use_models=False, labels=labels, visit_gap=gap, jobs=1
        )
        summary = run_convert(settings)
        assert summary.exit_code == ExitCode.OK, [r.as_dict() for r in summary.results]
        got = {}
        for p in out.rglob("*.dcm"):
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            got[str(ds.ContentTime)[:4]] = str(ds.StudyInstanceUID)
        return got

    cut = studies(tmp_path / "cut", 10)
    assert len(cut) == 5 and len(set(cut.values())) == 3
    assert cut["0900"] == cut["0902"] != cut["0930"] == cut["0931"] != cut["1030"]
    assert len(set(studies(tmp_path / "off", 0).values())) == 1


def test_a_negative_visit_gap_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--visit-gap"):
        ConvertSettings(inputs=[tmp_path], output=tmp_path / "o", visit_gap=-1).validate()


def test_the_default_records_set_and_bad_protocol_files(tmp_path: Path) -> None:
    default = load_records()
    assert [v.name for v in default.views] == [
        "frontal at rest",
        "frontal smiling",
        "right profile",
        "intraoral frontal",
        "right buccal",
        "left buccal",
        "upper occlusal",
        "lower occlusal",
    ]
    assert "EV03" in default.views[2].protocols and "IV20" in default.views[5].protocols
    bad = tmp_path / "bad.toml"
    for text, why in [
        ('[[views]]\nname = "x"\nprotocols = ["EV99"]\n', "not an ADA-1100 view"),
        ('name = "x"\n', "no \\[\\[views\\]\\]"),
        ('[[views]]\nname = "x"\n', "needs a name and a list"),
        ("views = [", "--records"),
    ]:
        bad.write_text(text)
        with pytest.raises(UsageError, match=why):
            load_records(bad)
        with pytest.raises(UsageError):
            ConvertSettings(inputs=[tmp_path], output=tmp_path / "o", records=bad).validate()


def test_visits_count_present_missing_and_duplicated() -> None:
    items = [_item("a", 0), _item("b", 1), _item("c", 2), _item("d", 40)]
    for item, code in zip(items, ["EV15", "EV19", "EV19", "IV07"], strict=True):
        item.labels = item.labels.with_label(Label("protocol", code, source="user"))
    got = visits(plan_batch(items, b"k", visit_gap=10), load_records())
    assert [v["photos"] for v in got] == [3, 1]
    assert got[0]["present"] == ["frontal at rest", "frontal smiling"]
    assert got[0]["duplicated"] == ["frontal smiling"]
    assert got[0]["first"] == "2026-03-02T09:00:00" and got[0]["last"] == "2026-03-02T09:02:00"
    assert got[1]["present"] == ["intraoral frontal"] and len(got[1]["missing"]) == 7
    assert incomplete_line(got[1]).startswith(
        "visit 2026-03-02 09:40 (no Patient ID, 1 photo): missing frontal at rest"
    )


def test_cli_records_options(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from orthovision_cli.cli import app

    inbox = tmp_path / "in"
    inbox.mkdir()
    _dated(inbox / "a.jpg", T0)
    base = ["convert", str(inbox), "-o", str(tmp_path / "out"), "--no-models", "--modality", "XC"]
    missing = CliRunner().invoke(app, [*base, "--records", str(tmp_path / "none.toml")])
    assert missing.exit_code == ExitCode.USAGE
    assert (
        "--records" in missing.stdout + missing.stderr and "Traceback" not in missing.stdout + missing.stderr
    )
    ok = CliRunner().invoke(app, [*base, "--protocol", "EV15"])
    assert ok.exit_code == ExitCode.OK, ok.stdout + ok.stderr
    assert "missing frontal smiling, right profile" in ok.stdout + ok.stderr
    strict = CliRunner().invoke(app, [*base, "--protocol", "EV15", "--require-complete", "--force"])
    assert strict.exit_code == ExitCode.SOME_FAILED, strict.stdout + strict.stderr


def test_the_documented_protocol_example_loads(tmp_path: Path) -> None:
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "batch.md").read_text()
    example = re.search(r"```text\n(name = \"Progress visit\".*?)```", doc, re.S)
    assert example is not None
    (tmp_path / "p.toml").write_text(example.group(1))
    got = load_records(tmp_path / "p.toml")
    assert got.name == "Progress visit" and [v.name for v in got.views] == [
        "frontal smiling",
        "intraoral frontal",
    ]


def _view(name: str, minutes: float, protocol: str) -> PlanInput:
    item = _item(name, minutes)
    item.labels = item.labels.with_label(Label("protocol", protocol, source="user"))
    return item


def test_a_restarting_series_starts_a_visit() -> None:
    # Two patients two minutes apart: rest, smile, intraoral; then rest again.
    items = [
        _view("a", 0, "EV15"),
        _view("b", 1, "EV19"),
        _view("c", 2, "IV07"),
        _view("d", 3, "IV01"),
        _view("e", 5, "EV15"),  # the next patient's records begin
        _view("f", 6, "IV07"),
    ]
    assert _names(capture_sessions(items, 10)) == [["a", "b", "c", "d"], ["e", "f"]]
    # A retaken frontal, or intraoral views first and the face after: one visit.
    retake = [_view("a", 0, "EV15"), _view("b", 1, "EV15"), _view("c", 2, "IV07")]
    assert _names(capture_sessions(retake, 10)) == [["a", "b", "c"]]
    face_last = [_view("a", 0, "IV07"), _view("b", 1, "IV01"), _view("c", 2, "EV15"), _view("d", 3, "EV19")]
    assert _names(capture_sessions(face_last, 10)) == [["a", "b", "c", "d"]]
    assert _names(capture_sessions(items, 0)) == [["a", "b", "c", "d", "e", "f"]]  # visits off
    plans = plan_batch(items, b"k" * 32, visit_gap=10)
    assert len({p.study_uid for p in plans}) == 2


def test_confirm_sees_the_same_visits_one_file_at_a_time() -> None:
    from orthovision_cli.review.confirm_visits import Visits

    seen = Visits(10)
    folder = "/card/DCIM"
    first = seen.new(_view("a", 0, "EV15"), folder)
    assert first is not None
    assert seen.of(_view("b", 1, "IV07"), folder) is first
    assert seen.of(_view("c", 3, "EV15"), folder) is None  # the series restarts: another visit
    assert seen.of(_view("d", 30, "IV01"), folder) is None  # more than 10 minutes
    assert Visits(0).new(_view("a", 0, "EV15"), folder) is None  # visits off: asked per file


def test_a_radiograph_joins_the_visit_of_its_patient_that_day() -> None:
    p1, p2 = PatientInfo(patient_id="P1"), PatientInfo(patient_id="P2")
    items = [_item("a", 0), _item("b", 2), _item("c", 40), _item("d", 42), _item("x", None, "PX")]
    items = [replace(i, patient=p1 if i.rel in "ab" else p2) for i in items]
    study = {p.input.rel: p.study_uid for p in plan_batch(items, b"k" * 32, visit_gap=10)}
    assert study["x"] == study["c"] == study["d"] != study["a"] == study["b"]
    # Without a patient of its own it joins no patient's visit.
    items[-1] = replace(items[-1], patient=PatientInfo())
    study = {p.input.rel: p.study_uid for p in plan_batch(items, b"k" * 32, visit_gap=10)}
    assert study["x"] not in (study["a"], study["c"])
