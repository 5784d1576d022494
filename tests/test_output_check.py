"""A re-run's triage is done by a second process that reads the state while the walk goes on
(issue 25), and its answer is the one the run would reach alone: the inputs never seen, the
unchanged ones with their report lines byte for byte, the duplicates; an input whose DICOM was
deleted is converted again. Where the second process cannot answer, the run decides itself."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from testdata import DATA

from orthovision_cli.batch import output_check
from orthovision_cli.batch.ahead import never_seen
from orthovision_cli.batch.results import ResultLog
from orthovision_cli.batch.resume import settings_key, triage
from orthovision_cli.batch.runner import run_convert
from orthovision_cli.batch.state import STATE_DIR, StateStore
from orthovision_cli.batch.walk import FoundList, find_inputs
from orthovision_cli.config import ConvertSettings
from orthovision_cli.errors import UsageError
from orthovision_cli.types import FileStatus

PHOTOS = sorted((DATA / "photos/faces_london/rest").glob("*.jpg"))[:4]


def settings_for(src: Path, out: Path) -> ConvertSettings:
    return ConvertSettings(inputs=[src], output=out, use_models=False, labels={"modality": "XC"}, jobs=1)


def convert(src: Path, out: Path) -> dict[str, str]:
    return {Path(r.path).name: str(r.status) for r in run_convert(settings_for(src, out)).results}


def outputs_of(out: Path) -> dict[str, list[str]]:
    db = sqlite3.connect(out / STATE_DIR / "state.sqlite")
    try:
        rows = db.execute("SELECT path, outputs FROM inputs WHERE status='done'").fetchall()
    finally:
        db.close()
    return {Path(p).name: output_check.output_list(o) for p, o in rows}


def two_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every state counts as large, on a machine with a second core: the child starts."""
    monkeypatch.setattr(output_check, "APART_FROM", 0)
    monkeypatch.setattr(output_check.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)


@pytest.fixture
def grown(converted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> tuple[Path, FoundList, str]:
    """The converted folder with a file the state has never seen, the child able to start: the
    output, the walk's find and the settings key."""
    src, out = converted
    two_cores(monkeypatch)
    shutil.copy(PHOTOS[3], src / "new.jpg")
    return out, find_inputs([src.absolute()], skip_dirs=[out]), settings_key(settings_for(src, out))


def asked(state: StateStore, out: Path, key: str, found: FoundList, log_fd: int) -> output_check.OutputCheck:
    """The child started (writing into the log `log_fd`) and sent what the walk found."""
    check = output_check.start(state, out, key, log_fd)
    assert check is not None
    check.ask(found.columns(), 10)
    return check


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

    def start(
        state: output_check.State, output: Path, key: str, log_fd: int
    ) -> output_check.OutputCheck | None:
        check = real_start(state, output, key, log_fd)
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


def both_ways(src: Path, out: Path) -> list[Any]:
    """(never-seen rels, report lines, inputs left) as the child answers with the lines written
    into the run's log, and as the main process decides alone, on the same walk of `src` into
    `out`."""
    found = find_inputs([src.absolute()], skip_dirs=[out])
    key = settings_key(settings_for(src, out))
    got = []
    for how in ("into the log", "alone"):
        with StateStore(out) as state:
            log = ResultLog(state.dir)
            check = None
            if how != "alone":
                check = output_check.start(state, out, key, log.fileno())
                assert check is not None
                check.ask(found.columns(), 100)
                answers = check.never_seen(), check.unchanged()
                assert answers[0] is not None and answers[1] is not None  # answered: no fallback
                check.never_seen = lambda a=answers: a[0]  # type: ignore[method-assign,misc]
                check.unchanged = lambda a=answers: a[1]  # type: ignore[method-assign,misc]
            seen = [f.rel for f in never_seen(found, state, 100, check)]
            left = triage(found, state, key, False, out, log, check)
            lines = [line for line, _ in log.report_lines()]
            with tempfile.TemporaryFile() as f:
                assert log.copy_report(f.fileno()) == (len(lines), [])
                f.seek(0)
                assert f.read() == b"".join(lines)
            got.append((seen, lines, [f.rel for f in left]))
    return got


def test_the_child_decides_as_the_main_process_would(
    converted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = converted
    two_cores(monkeypatch)
    # A copy of a converted photograph (recorded as its duplicate), a name that is not UTF-8,
    # then an output deleted, a photograph touched, and two files the state has never seen.
    shutil.copy(src / PHOTOS[0].name, src / "copy.jpg")
    shutil.copy(PHOTOS[0], src / os.fsdecode(b"scan_\xe9t\xe9.jpg"))
    convert(src, out)
    (out / outputs_of(out)[PHOTOS[1].name][0]).unlink()
    os.utime(src / PHOTOS[2].name, ns=(1, 10**18))
    for name in ("new_a.jpg", "new_b.jpg"):
        shutil.copy(PHOTOS[3], src / name)

    into_the_log, here = both_ways(src, out)

    assert into_the_log == here
    seen, lines, left = here
    assert seen == ["new_a.jpg", "new_b.jpg"]
    assert sorted(left) == sorted([PHOTOS[1].name, PHOTOS[2].name, "new_a.jpg", "new_b.jpg"])
    stayed = [json.loads(line) for line in lines]
    assert {d["status"] for d in stayed} == {"unchanged"}
    assert sorted(d["rel"] for d in stayed) == sorted(
        [PHOTOS[0].name, PHOTOS[3].name, "copy.jpg", os.fsdecode(b"scan_\xe9t\xe9.jpg")]
    )
    assert [d["reason"] for d in stayed if d["rel"] == "copy.jpg"] == ["duplicate"]


def test_another_settings_key_leaves_nothing_unchanged(
    converted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = converted
    two_cores(monkeypatch)
    found = find_inputs([src.absolute()], skip_dirs=[out])
    with StateStore(out) as state:
        log = ResultLog(state.dir)
        check = asked(state, out, "another key", found, log.fileno())
        assert check.never_seen() == []
        answer = check.unchanged()
        assert answer is not None
        indices, rels, lengths, twins = answer
        assert (list(indices), rels, list(lengths), twins) == ([], [], [], [])
        assert os.fstat(log.fileno()).st_size == 0  # no line written


def test_no_answer_when_the_child_fails(
    converted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = converted
    two_cores(monkeypatch)
    monkeypatch.setattr(output_check.sys, "executable", "/bin/false")
    found = find_inputs([src.absolute()], skip_dirs=[out])
    with StateStore(out) as state:
        log = ResultLog(state.dir)
        check = asked(state, out, "k", found, log.fileno())
    assert check.never_seen() is None and check.unchanged() is None


def test_lines_the_child_wrote_into_the_log_before_its_answer_was_lost_are_written_over(
    grown: tuple[Path, FoundList, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, found, key = grown
    reports = []
    for lose in (False, True):
        with StateStore(out) as state:
            log = ResultLog(state.dir)
            check = asked(state, out, key, found, log.fileno())
            assert check.never_seen() is not None
            if lose:  # the child has written its lines: its answer goes missing
                assert check._proc is not None and check._proc.wait() == 0
                assert os.fstat(log.fileno()).st_size > 0
                monkeypatch.setattr(check, "_read", lambda: None)
            left = triage(found, state, key, False, out, log, check)
            reports.append(([f.rel for f in left], list(log.report_lines())))
    assert reports[0] == reports[1]
    assert reports[0][0] == ["new.jpg"] and len(reports[0][1]) == 4


def test_a_child_killed_between_its_answers_leaves_the_triage_here(
    grown: tuple[Path, FoundList, str],
) -> None:
    out, found, key = grown
    with StateStore(out) as state:
        log = ResultLog(state.dir)
        check = asked(state, out, key, found, log.fileno())
        assert [f.rel for f in never_seen(found, state, 10, check)] == ["new.jpg"]
        assert check._proc is not None
        check._proc.kill()
        check._proc.wait()
        left = triage(found, state, key, False, out, log, check)
    assert [f.rel for f in left] == ["new.jpg"]
    assert len(log) == 4


def test_no_second_process_on_one_core_or_a_small_state(
    converted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, out = converted
    with StateStore(out) as state:
        log = ResultLog(state.dir)
        monkeypatch.setattr(output_check.os, "sched_getaffinity", lambda pid: {0}, raising=False)
        monkeypatch.setattr(output_check, "APART_FROM", 0)
        assert output_check.start(state, out, "k", log.fileno()) is None
        monkeypatch.setattr(output_check.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
        monkeypatch.setattr(output_check, "APART_FROM", 5)  # four rows
        assert output_check.start(state, out, "k", log.fileno()) is None


def test_the_child_is_stopped_when_the_walk_fails(
    converted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = converted
    started: list[output_check.OutputCheck] = []
    real_start = output_check.start

    def start(
        state: output_check.State, output: Path, key: str, log_fd: int
    ) -> output_check.OutputCheck | None:
        check = real_start(state, output, key, log_fd)
        if check is not None:
            started.append(check)
        return check

    monkeypatch.setattr(output_check, "start", start)
    two_cores(monkeypatch)
    shutil.rmtree(src)  # the walk fails: the input is gone
    with pytest.raises(UsageError):
        convert(src, out)
    assert len(started) == 1
    # Stopped by the run, not left to the garbage collector (the traceback holds it here).
    assert started[0]._proc is None


def test_the_child_is_this_package_whatever_the_working_folder_holds(
    converted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Run from a folder that holds another `orthovision_cli` (a checkout of another version),
    the child still runs this package's code, not that one."""
    src, out = converted
    decoy = tmp_path / "elsewhere" / "orthovision_cli"
    decoy.mkdir(parents=True)
    (decoy / "__init__.py").write_text("raise ImportError('the decoy was imported')\n")
    monkeypatch.chdir(decoy.parent)
    two_cores(monkeypatch)
    found = find_inputs([src.absolute()], skip_dirs=[out])
    with StateStore(out) as state:
        log = ResultLog(state.dir)  # held: the child writes into its file
        check = asked(state, out, settings_key(settings_for(src, out)), found, log.fileno())
        assert check.never_seen() == []
        answer = check.unchanged()
    assert answer is not None and len(answer[0]) == len(PHOTOS)
