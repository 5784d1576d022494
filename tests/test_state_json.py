"""The state stores plain data: each converted input's plan as JSON (never a pickle), read back
exactly; a row left by an older version with a pickled plan is planned again, never unpickled
and never skipped."""

from __future__ import annotations

import pickle
import shutil
import sqlite3
from pathlib import Path

import pydicom
from testdata import DATA

from orthovision_cli.batch.codec import CodecError, dumps, loads
from orthovision_cli.batch.runner import run_convert
from orthovision_cli.batch.stored_plans import read_plan
from orthovision_cli.config import ConvertSettings
from orthovision_cli.dicom.plan import PatientInfo, PlanInput
from orthovision_cli.inputs.reader import probe
from orthovision_cli.labels.model import Code, Label, Labels

PHOTOS = sorted((DATA / "photos/faces_london/rest").glob("*.jpg"))


def test_plans_round_trip_through_json() -> None:
    images = [
        *PHOTOS[:2],
        DATA / "film_scans/starshot.tif",
        DATA / "photos/intraoral/sample_topsOrtho.jp2",
        DATA / "radiographs/dental/bitewing.png",
    ]
    for path in images:
        labels = Labels(
            modality=Label(
                "modality",
                "XC",
                0.93,
                "local",
                codes=(Code("XC", "DCM", "External-camera Photography"),),
                detail={"scores": [0.93, 0.07], "note": None},
            )
        )
        item = PlanInput(
            "key",
            f"a/{path.name}",
            probe(path),
            labels,
            PatientInfo(patient_id="P1", birth_date="19800101"),
            "sha",
        )
        text = dumps(item)
        assert "\\n" not in text and text.startswith("{")
        assert loads(text, PlanInput) == item
        # Fields at their default left out (the state's stored plans): read back the same.
        short = dumps(item, defaults=False)
        assert len(short) < len(text) and loads(short, PlanInput) == item


def test_a_plan_that_does_not_fit_is_an_error_not_a_guess() -> None:
    item = PlanInput("k", "a.jpg", probe(PHOTOS[0]), Labels(), PatientInfo(), "h")
    broken = dumps(item).replace('"format":"jpeg"', '"format":7')
    dated = PlanInput(
        "k", "a.jpg", probe(DATA / "photos/intraoral/sample_NikonD90.JPG"), Labels(), PatientInfo(), "h"
    )
    bad_date = dumps(dated).replace('"acquired":"2022-11-18T17:13:29"', '"acquired":"yesterday"')
    assert bad_date != dumps(dated)
    for text in (broken, bad_date, "not json", b"\x80\x04\x95pickle"):
        try:
            loads(text, PlanInput)
        except CodecError:
            continue
        raise AssertionError(f"{text!r} decoded")


def _settings(src: Path, out: Path) -> ConvertSettings:
    return ConvertSettings(
        inputs=[src],
        output=out,
        use_models=False,
        jobs=1,
        fsync=False,
        labels={"modality": "XC", "body_part": "HEAD"},
        patient={"patient_id": "P1"},
    )


def test_pickled_plans_of_an_older_version_are_planned_again(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for p in PHOTOS[:2]:
        shutil.copy(p, src)
    first = run_convert(_settings(src, out))
    assert first.counts == {"converted": 2}
    db = out / ".orthovision" / "state.sqlite"
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT path, typeof(plan_input), plan_input FROM inputs").fetchall()
        assert {t for _, t, _ in rows} == {"text"}  # JSON, not a pickle
        # What an older version left: a pickled plan (of any object: it must never be loaded).
        con.execute("UPDATE inputs SET plan_input=?", (pickle.dumps({"old": "plan"}),))
    shutil.copy(PHOTOS[2], src)
    again = run_convert(_settings(src, out))
    by_name = {Path(r.path).name: r for r in again.results}
    for p in PHOTOS[:2]:  # not skipped: analysed again, found unchanged, its plan stored anew
        assert (by_name[p.name].status, by_name[p.name].reason) == ("unchanged", "touched")
    assert by_name[PHOTOS[2].name].status == "converted"
    assert again.warnings == []
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT path, rel, content_hash, plan_input FROM inputs").fetchall()
    assert {type(text) for *_, text in rows} == {str}
    for path, rel, sha, text in rows:  # the stored form: what later runs plan with (issue 25)
        assert isinstance(read_plan(text, path, rel, sha), PlanInput)
    # The new input joined the earlier ones: same study and series, numbering continued.
    datasets = [
        pydicom.dcmread(out / o) for r in [*first.results, by_name[PHOTOS[2].name]] for o in r.outputs
    ]
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert sorted(int(ds.InstanceNumber) for ds in datasets) == [1, 2, 3]


def test_an_unreadable_plan_is_reported_not_skipped_silently(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy(PHOTOS[0], src)
    run_convert(_settings(src, out))
    with sqlite3.connect(out / ".orthovision" / "state.sqlite") as con:
        con.execute("UPDATE inputs SET plan_input='{\"broken\": true}'")
    shutil.copy(PHOTOS[1], src)
    again = run_convert(_settings(src, out))
    assert again.counts == {"unchanged": 1, "converted": 1}
    assert len(again.warnings) == 1 and "--force" in again.warnings[0]
