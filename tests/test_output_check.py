"""A re-run asks a second process which converted inputs lost an output while it walks (issue 25),
and gets the answer it would get by stat'ing each output itself: an input whose DICOM was deleted
is converted again, the others stay unchanged; where the second process cannot answer, the run
stats the outputs and decides the same."""

from __future__ import annotations

import shutil
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

import pytest
from testdata import DATA

from orthovision_cli.batch import output_check
from orthovision_cli.batch.runner import run_convert
from orthovision_cli.batch.state import STATE_DIR
from orthovision_cli.config import ConvertSettings
from orthovision_cli.errors import UsageError
from orthovision_cli.types import FileStatus

PHOTOS = sorted((DATA / "photos/faces_london/rest").glob("*.jpg"))[:4]


def convert(src: Path, out: Path) -> dict[str, str]:
    settings = ConvertSettings(inputs=[src], output=out, use_models=False, labels={"modality": "XC"}, jobs=1)
    return {Path(r.path).name: str(r.status) for r in run_convert(settings).results}


def outputs_of(out: Path) -> dict[str, list[str]]:
    db = sqlite3.connect(out / STATE_DIR / "state.sqlite")
    try:
        rows = db.execute("SELECT path, outputs FROM inputs WHERE status='done'").fetchall()
    finally:
        db.close()
    return {Path(p).name: output_check.output_list(o) for p, o in rows}


@pytest.fixture
def converted(tmp_path: Path) -> tuple[Path, Path]:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for p in PHOTOS:
        shutil.copy(p, src / p.name)
    assert set(convert(src, out).values()) == {FileStatus.CONVERTED}
    return src, out


@pytest.mark.parametrize("how", ["second process", "stat here"])
def test_a_deleted_output_is_converted_again(
    converted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    src, out = converted
    started: list[object] = []
    real_start = output_check.start

    def start(db: sqlite3.Connection, path: Path, output: Path) -> output_check.OutputCheck | None:
        check = real_start(db, path, output)
        started.append(check)
        return check

    monkeypatch.setattr(output_check, "start", start)
    monkeypatch.setattr(output_check, "APART_FROM", 0 if how == "second process" else 10**9)
    monkeypatch.setattr(output_check.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    gone = PHOTOS[1].name
    (out / outputs_of(out)[gone][0]).unlink()

    got = convert(src, out)

    assert got[gone] == FileStatus.CONVERTED
    assert all(s == FileStatus.UNCHANGED for name, s in got.items() if name != gone)
    assert (out / outputs_of(out)[gone][0]).is_file()
    assert (started[0] is not None) == (how == "second process")


def test_the_child_names_exactly_the_rows_with_an_output_missing(converted: tuple[Path, Path]) -> None:
    _, out = converted
    db_path = out / STATE_DIR / "state.sqlite"
    db = sqlite3.connect(db_path)
    rowids = dict(db.execute("SELECT outputs, rowid FROM inputs WHERE status='done'").fetchall())
    db.close()
    outputs = outputs_of(out)
    (out / outputs[PHOTOS[2].name][0]).unlink()
    (out / outputs[PHOTOS[3].name][0]).unlink()
    want = {rowids[f'["{outputs[PHOTOS[i].name][0]}"]'] for i in (2, 3)}

    import subprocess

    child = subprocess.run(
        [sys.executable, "-S", "-m", output_check.__name__, str(db_path), str(out) + "/"],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(Path(output_check.__file__).resolve().parents[2])},
    )
    assert child.stdout.split()[-1] == output_check.END
    assert {int(x) for x in child.stdout.split()[:-1]} == want


def test_no_answer_when_the_child_fails(
    converted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, out = converted
    monkeypatch.setattr(output_check, "APART_FROM", 0)
    monkeypatch.setattr(output_check.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(output_check.sys, "executable", "/bin/false")
    path = out / STATE_DIR / "state.sqlite"
    with closing(sqlite3.connect(path)) as db:
        check = output_check.start(db, path, out)
    assert check is not None and check.missing() is None


def test_no_second_process_on_one_core_or_a_small_state(
    converted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, out = converted
    path = out / STATE_DIR / "state.sqlite"
    with closing(sqlite3.connect(path)) as db:
        monkeypatch.setattr(output_check.os, "sched_getaffinity", lambda pid: {0}, raising=False)
        monkeypatch.setattr(output_check, "APART_FROM", 0)
        assert output_check.start(db, path, out) is None
        monkeypatch.setattr(output_check.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
        monkeypatch.setattr(output_check, "APART_FROM", 5)  # four rows
        assert output_check.start(db, path, out) is None


def test_the_child_is_stopped_when_the_walk_fails(
    converted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = converted
    started: list[output_check.OutputCheck] = []
    real_start = output_check.start

    def start(db: sqlite3.Connection, path: Path, output: Path) -> output_check.OutputCheck | None:
        check = real_start(db, path, output)
        if check is not None:
            started.append(check)
        return check

    monkeypatch.setattr(output_check, "start", start)
    monkeypatch.setattr(output_check, "APART_FROM", 0)
    monkeypatch.setattr(output_check.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    shutil.rmtree(src)  # the walk fails: the input is gone
    with pytest.raises(UsageError):
        convert(src, out)
    assert len(started) == 1
    # Stopped by the run, not left to the garbage collector (the traceback holds it here).
    assert started[0]._proc is None
