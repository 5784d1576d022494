"""Incremental planning (issue 25): an input's plan depends only on the inputs of its plan group,
and the compact form the state keeps of a plan plans exactly as the whole plan."""

from __future__ import annotations

import os
import shutil
from dataclasses import fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from testdata import DATA

from orthovision_cli.batch.codec import dumps
from orthovision_cli.batch.runner import run_convert
from orthovision_cli.batch.stored_plans import read_plan, stored_plan
from orthovision_cli.config import ConvertSettings
from orthovision_cli.dicom.plan import (
    InstancePlan,
    PatientInfo,
    PlanInput,
    plan_batch,
    plan_group,
)
from orthovision_cli.inputs.reader import probe
from orthovision_cli.labels.model import Code, Label, Labels
from orthovision_cli.types import ExifFacts, PageFacts, Probe

SECRET = b"0123456789abcdef0123456789abcdef"
T0 = datetime(2024, 3, 1, 9, 0)


def _facts(plan: InstancePlan) -> tuple[Any, ...]:
    """Everything a plan writes (every field), with the input it plans (key, rel)."""
    values = [getattr(plan, f.name) for f in fields(plan) if f.name != "input"]
    return (plan.input.key, plan.input.rel, *map(repr, values))


@st.composite
def plan_inputs(draw: st.DrawFn) -> list[PlanInput]:
    """A batch of made-up inputs over a few patients, folders, dates, cameras and kinds, where
    every rule of `_studies` comes into play (user's study date, capture days, undated files,
    visits cut by time and camera)."""
    items = []
    for i in range(draw(st.integers(1, 24))):
        who = draw(st.sampled_from(["", "P1", "P2"]))
        named = draw(st.sampled_from(["", "DOE^JANE"])) if not who else ""
        study_date = draw(st.sampled_from(["", "", "20240301", "20240302"]))
        folder = draw(st.sampled_from(["/data/a", "/data/b", "/data/a/c"]))
        minutes = draw(st.one_of(st.none(), st.sampled_from([0, 5, 30, 60 * 24, 60 * 24 * 400])))
        acquired = None if minutes is None else T0 + timedelta(minutes=minutes)
        camera = draw(st.sampled_from([("", ""), ("Nikon", "D90"), ("Canon", "R6")]))
        modality = draw(st.sampled_from(["XC", "XC", "PX", "DX"]))
        protocol = draw(st.sampled_from([None, "EV01", "EV15", "IV06", "IV07", "PANORAMIC"]))
        labels = Labels(
            modality=Label("modality", modality, 0.9, "local"),
            protocol=Label("protocol", protocol, 0.95, "local") if protocol else None,
        )
        pr = Probe(
            Path(f"{folder}/img{i:02d}.jpg"),
            "jpeg",
            1000 + i,
            [PageFacts(480, 640, 3, 8, "YBR_FULL_422", "JPEG baseline")],
            ExifFacts(acquired, make=camera[0], model=camera[1]),
        )
        timepoint = draw(st.sampled_from(["", "", "INITIAL", "PROGRESS"]))
        start = "20230101" if timepoint == "PROGRESS" else ""
        patient = PatientInfo(
            patient_id=who,
            patient_name=named,
            study_date=study_date,
            timepoint=timepoint,
            treatment_start=start,
        )
        items.append(PlanInput(f"k{i}", f"{folder[6:]}/img{i:02d}.jpg", pr, labels, patient, f"h{i}"))
    return items


@settings(max_examples=150, deadline=None)
@given(plan_inputs(), st.sampled_from([0, 10]))
def test_inputs_of_one_study_share_a_plan_group_and_groups_plan_alone(
    items: list[PlanInput], visit_gap: int
) -> None:
    whole = plan_batch(items, SECRET, visit_gap=visit_gap)
    group_of_study: dict[str, str] = {}
    for p in whole:
        assert group_of_study.setdefault(p.study_uid, plan_group(p.input)) == plan_group(p.input)
    # What incremental planning relies on: each group planned on its own plans the same.
    groups: dict[str, list[PlanInput]] = {}
    for item in items:
        groups.setdefault(plan_group(item), []).append(item)
    alone = [p for members in groups.values() for p in plan_batch(members, SECRET, visit_gap=visit_gap)]
    assert sorted(map(_facts, alone)) == sorted(map(_facts, whole))
    # And from what the state keeps of each: the same plans.
    rows = [(str(i.probe.path), i.rel, i.content_hash) for i in items]
    stored = [read_plan(stored_plan(i, *row), *row) for i, row in zip(items, rows, strict=True)]
    assert list(map(_facts, plan_batch(stored, SECRET, visit_gap=visit_gap))) == list(map(_facts, whole))


def _real_inputs(root: Path) -> list[PlanInput]:
    """Real test images (JPEG with EXIF, multi-page TIFF, 16-bit PNG, JPEG 2000, PNG), in two
    folders, labelled as a classifier would (codes, evidence) and with patient data."""
    files = {
        "a": [
            DATA / "photos/intraoral/sample_NikonD90.JPG",
            *sorted((DATA / "photos/faces_london/rest").glob("*.jpg"))[:3],
            DATA / "photos/intraoral/sample_topsOrtho.jp2",
        ],
        "b": [
            DATA / "film_scans/starshot.tif",
            *sorted((DATA / "film_scans").glob("Calc-*.png"))[:2],
            DATA / "radiographs/dental/bitewing.png",
            DATA / "radiographs/panoramic/basic_panoramic_radiograph.jpg",
        ],
    }
    items = []
    for folder, paths in files.items():
        (root / folder).mkdir(parents=True)
        for i, src in enumerate(paths):
            path = root / folder / src.name
            shutil.copy(src, path)
            modality = "XC" if folder == "a" else ("PX" if "panoramic" in src.name else "DX")
            labels = Labels(
                modality=Label(
                    "modality",
                    modality,
                    0.93,
                    "local",
                    codes=(Code(modality, "DCM", "a modality"),),
                    meaning="a meaning",
                    detail={"scores": [0.93, 0.07]},
                ),
                protocol=Label(
                    "protocol", "EV0" + str(i + 1) if folder == "a" else "PANORAMIC", 0.9, "local"
                ),
                body_part=Label("body_part", "HEAD", 1.0, "option"),
                orientation=Label("orientation", "90" if i == 1 else "0", 0.85, "exif"),
            )
            patient = PatientInfo(patient_id="P7", birth_date="19800101", sex="F", timezone="+0100")
            pr = probe(path)
            items.append(PlanInput(f"{i}{src.name}", f"{folder}/{src.name}", pr, labels, patient, f"sha{i}"))
    # Two pages of a real film scan in one TIFF: one instance per page, numbers follow on.
    scan = tifffile.imread(DATA / "film_scans/starshot.tif")[::8, ::8, 0]
    with tifffile.TiffWriter(root / "b/pages.tif") as tw:
        for page in (scan, np.flipud(scan)):
            tw.write(page, photometric="minisblack")
    pr = probe(root / "b/pages.tif")
    labels = Labels(modality=Label("modality", "OT", 1.0, "option"))
    items.append(PlanInput("pages", "b/pages.tif", pr, labels, PatientInfo(patient_id="P7"), "shap"))
    return items


def test_the_stored_form_plans_exactly_as_the_whole_plan(tmp_path: Path) -> None:
    items = _real_inputs(tmp_path)
    assert any(i.probe.jpeg is not None and i.probe.jpeg.segments for i in items)
    assert any(i.probe.exif.acquired is not None for i in items)
    assert any(len(i.probe.pages) > 1 for i in items)
    stored = []
    for item in items:
        row = (str(item.probe.path), item.rel, item.content_hash)
        text = stored_plan(item, *row)
        # Issue 25: the state keeps <= 1 KB a file, the plan a fraction of it.
        assert len(text.encode()) <= 600 and len(text) * 2 < len(dumps(item)), text
        stored.append(read_plan(text, *row))
        assert plan_group(stored[-1]) == plan_group(item)
        assert stored[-1].probe.jpeg is None and not any(lab.codes for lab in stored[-1].labels)
    for gap in (0, 10):
        whole = plan_batch(items, SECRET, visit_gap=gap, extra_settings={"x": 1})
        again = plan_batch(stored, SECRET, visit_gap=gap, extra_settings={"x": 1})
        assert [_facts(p) for p in again] == [_facts(p) for p in whole]
        assert len({p.study_uid for p in whole}) >= 2 and max(p.instance_number for p in whole) >= 3
    # New inputs planned with earlier ones stored compactly: the plans a full plan gives.
    new = items[2::3]
    earlier_full = [i for i in items if i not in new]
    earlier_stored = [s for i, s in zip(items, stored, strict=True) if i not in new]
    keys = {i.key for i in new}
    with_full = [_facts(p) for p in plan_batch(new + earlier_full, SECRET) if p.input.key in keys]
    with_stored = [_facts(p) for p in plan_batch(new + earlier_stored, SECRET) if p.input.key in keys]
    assert with_stored == with_full


def test_a_run_adding_a_folder_still_counts_the_unknown_patients_earlier_studies(tmp_path: Path) -> None:
    """The unknown patient (no ID, no name) of two earlier folders and of a new one: the run that
    adds the new folder reads none of the earlier plans, and still says that patient holds
    several studies (from the index of plan groups)."""
    src, out = tmp_path / "in", tmp_path / "out"
    faces = sorted((DATA / "photos/faces_london/rest").glob("*.jpg"))
    for folder, face in zip(("x", "y"), faces, strict=False):
        (src / folder).mkdir(parents=True)
        shutil.copy(face, src / folder)
    labels = {"modality": "XC", "body_part": "HEAD"}
    settings = ConvertSettings(inputs=[src], output=out, use_models=False, labels=labels, fsync=False)
    first = run_convert(settings)
    assert first.counts == {"converted": 2}
    assert any("holds 2 studies" in n for n in first.notices), first.notices
    (src / "z").mkdir()
    shutil.copy(faces[2], src / "z")
    added = run_convert(settings)
    assert added.counts == {"unchanged": 2, "converted": 1}
    assert any("holds at least 3 studies" in n for n in added.notices), added.notices
    # With a Patient ID for the new folder's file, the unknown patient gets nothing new: no word.
    (src / "w").mkdir()
    shutil.copy(faces[3], src / "w")
    named = ConvertSettings(
        inputs=[src], output=out, use_models=False, labels=labels, fsync=False, include=["w/*"]
    )
    named.patient = {"patient_id": "P3"}
    assert not any("unknown patient" in n for n in run_convert(named).notices)


def test_a_file_added_beside_one_with_a_latin1_name_is_numbered_after_it(tmp_path: Path) -> None:
    """A name that is not UTF-8 (a Latin-1 system's) in the folder and in the folder's name:
    the stored plan (path and rel taken from the row, a BLOB) reads back, and the new file
    joins its study and series."""
    src, out = tmp_path / "in", tmp_path / "out"
    folder = os.fsdecode(bytes(src) + b"/caf\xe9")
    os.makedirs(folder)
    faces = sorted((DATA / "photos/faces_london/rest").glob("*.jpg"))
    shutil.copy(faces[0], os.fsdecode(os.fsencode(folder) + b"/a_\xe9t\xe9.jpg"))
    labels = {"modality": "XC", "body_part": "HEAD"}
    settings = ConvertSettings(
        inputs=[src], output=out, use_models=False, labels=labels, fsync=False, patient={"patient_id": "P1"}
    )
    assert run_convert(settings).counts == {"converted": 1}
    shutil.copy(faces[1], os.fsdecode(os.fsencode(folder) + b"/b.jpg"))
    added = run_convert(settings)
    assert added.counts == {"unchanged": 1, "converted": 1}
    assert added.warnings == []
    datasets = [pydicom.dcmread(p) for p in sorted(out.rglob("*.dcm"))]
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert sorted(int(ds.InstanceNumber) for ds in datasets) == [1, 2]
