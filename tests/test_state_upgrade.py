"""A state folder written before issue 25 (tests/data/state_v0: no plan groups, whole plans) is
upgraded when opened: nothing converted again, a new file numbered after the earlier ones as a
fresh full plan numbers it, and only the plans of the new file's group are read."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pydicom
from testdata import DATA, orthovision, run_report

STATE_V0 = DATA / "state_v0" / "out"
MADE_IN = "/tmp/orthovision-v0-state/in"  # tests/data/state_v0/README.md
MTIME_NS = 1767323045000000000
FILMS = DATA / "radiographs" / "musculoskeletal"
LAYOUT = {"a": ["IMG0003297.jpg", "IMG0003298.jpg"], "b": ["IMG0003301.jpg"]}
ARGS = ("--no-models", "--modality", "DX", "--body-part", "HAND", "--patient-id", "P1", "--jobs", "1")


def _old_state(tmp_path: Path) -> tuple[Path, Path]:
    """The v0 output folder and its inputs, the paths in its state rewritten to this test's."""
    src, out = tmp_path / "in", tmp_path / "out"
    shutil.copytree(STATE_V0, out)
    for folder, names in LAYOUT.items():
        (src / folder).mkdir(parents=True)
        for name in names:
            shutil.copy(FILMS / name, src / folder / name)
            os.utime(src / folder / name, ns=(MTIME_NS, MTIME_NS))
    with sqlite3.connect(out / ".orthovision" / "state.sqlite") as db:
        assert "plan_group" not in {r[1] for r in db.execute("PRAGMA table_info(inputs)")}
        db.execute(
            "UPDATE inputs SET path=replace(path, ?, ?), plan_input=replace(plan_input, ?, ?)",
            (MADE_IN, str(src), MADE_IN, str(src)),
        )
    db.close()
    return src, out


def _convert(src: Path, out: Path, *extra: str) -> dict[str, Any]:
    proc = orthovision("convert", str(src), "-o", str(out), *ARGS, "--no-fsync", "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    report["stderr"] = proc.stderr
    return report


def _rows(out: Path) -> list[tuple[str, str | None, str | None]]:
    with sqlite3.connect(out / ".orthovision" / "state.sqlite") as db:
        rows = db.execute("SELECT path, plan_group, plan_input FROM inputs ORDER BY path").fetchall()
    db.close()
    return rows


def _written(out: Path, report: dict[str, Any], name: str) -> pydicom.Dataset:
    (entry,) = [f for f in report["files"] if f["rel"].endswith(name)]
    assert entry["status"] == "converted", entry
    return pydicom.dcmread(out / entry["outputs"][0])


def test_an_old_state_resumes_and_numbers_a_new_file_as_a_full_plan(tmp_path: Path) -> None:
    src, out = _old_state(tmp_path)
    with sqlite3.connect(out / ".orthovision" / "state.sqlite") as db:
        before = dict(db.execute("SELECT path, length(plan_input) FROM inputs").fetchall())
    db.close()
    # Not --json: the upgrade says what it does, with its progress (minutes at a million rows).
    proc = orthovision("convert", str(src), "-o", str(out), *ARGS, "--no-fsync")
    assert proc.returncode == 0, proc.stderr
    assert "orthovision: upgrading the state (once) 3/3" in proc.stderr, proc.stderr
    again = run_report(out)
    assert again["counts"] == {"unchanged": 3}, again["files"]
    assert again["warnings"] == []
    rows = _rows(out)
    assert all(group for _, group, _ in rows)  # upgraded: each row has its plan group
    assert len({group for p, group, _ in rows if "/a/" in p}) == 1
    assert len({group for _, group, _ in rows}) == 2
    for path, _, plan in rows:
        assert plan is not None and len(plan) <= 1024 and len(plan) < before[path] / 2
    # A new film in folder a: numbered after a's two, and planned as a fresh full plan (a new
    # output folder, the same UID key) plans it. (The v0 files' own UIDs derive from the folder
    # they were made in, which this copy moved: the fresh plan is the reference.)
    shutil.copy(FILMS / "IMG0003309.jpg", src / "a")
    added = _convert(src, out)
    assert added["counts"] == {"unchanged": 3, "converted": 1}
    assert "upgrading" not in added["stderr"]  # once
    new = _written(out, added, "IMG0003309.jpg")
    fresh = tmp_path / "fresh"
    (fresh / ".orthovision").mkdir(parents=True)
    shutil.copy(out / ".orthovision" / "uid-secret", fresh / ".orthovision" / "uid-secret")
    full = _convert(src, fresh)
    assert full["counts"] == {"converted": 4}
    whole = _written(fresh, full, "IMG0003309.jpg")
    earlier = [_written(fresh, full, name) for name in LAYOUT["a"]]
    assert {ds.StudyInstanceUID for ds in earlier} == {new.StudyInstanceUID}
    assert {ds.SeriesInstanceUID for ds in earlier} == {new.SeriesInstanceUID}
    assert sorted(int(ds.InstanceNumber) for ds in [*earlier, new]) == [1, 2, 3]
    for tag in (
        "SOPInstanceUID",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "InstanceNumber",
        "SeriesNumber",
        "StudyID",
        "StudyDate",
        "StudyTime",
    ):
        assert new.get(tag) == whole.get(tag), tag


def test_an_unreadable_old_plan_still_warns_and_other_groups_are_not_read(tmp_path: Path) -> None:
    src, out = _old_state(tmp_path)
    with sqlite3.connect(out / ".orthovision" / "state.sqlite") as db:
        db.execute("UPDATE inputs SET plan_input='{\"broken\": true}' WHERE path LIKE '%IMG0003301.jpg'")
    db.close()
    shutil.copy(FILMS / "IMG0003309.jpg", src / "a")
    added = _convert(src, out)
    assert added["counts"] == {"unchanged": 3, "converted": 1}
    assert "upgrading" not in added["stderr"]  # once
    # Kept as it was, without a group: a run that adds files says its numbering may restart.
    assert [g for p, g, _ in _rows(out) if p.endswith("IMG0003301.jpg")] == [None]
    assert len(added["warnings"]) == 1 and "IMG0003301.jpg" in added["warnings"][0], added["warnings"]
    # Upgraded rows of a group no new file joins are never read: a broken plan there says nothing
    # (the row without a group is read by every run that adds files, and warns again, as before).
    with sqlite3.connect(out / ".orthovision" / "state.sqlite") as db:
        db.execute("UPDATE inputs SET plan_input='{\"broken\": true}' WHERE path LIKE '%/a/IMG0003297.jpg'")
    db.close()
    (src / "c").mkdir()
    shutil.copy(DATA / "radiographs/chest/7afaaccc.png", src / "c")
    third = _convert(src, out)
    assert third["counts"] == {"unchanged": 4, "converted": 1}, third["files"]
    assert third["warnings"] == added["warnings"]
