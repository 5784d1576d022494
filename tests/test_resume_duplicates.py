"""A copy of content converted already is reported as a duplicate once, recorded, and not read
again by later runs (a nightly job over an archive with copies in two folders); when its
original goes away it is converted in its own right."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from testdata import DATA

from orthovision_cli.batch.results import FileResult
from orthovision_cli.batch.runner import run_convert
from orthovision_cli.batch.state import STATE_DIR
from orthovision_cli.config import ConvertSettings
from orthovision_cli.types import EventKind, FileStatus

PHOTOS = sorted((DATA / "photos/faces_london/rest").glob("*.jpg"))


def run(src: Path, out: Path, dry_run: bool = False) -> tuple[dict[str, tuple[str, str]], int]:
    """{file name: (status, reason)} and how many inputs were analysed (read and hashed)."""
    analysed = 0

    def on_event(kind: EventKind | str, i: int, n: int, res: FileResult | None) -> None:
        nonlocal analysed
        if kind == EventKind.ANALYSED:
            analysed += 1

    settings = ConvertSettings(
        inputs=[src], output=out, use_models=False, labels={"modality": "XC"}, jobs=1, dry_run=dry_run
    )
    summary = run_convert(settings, on_event)
    return {Path(r.path).name: (str(r.status), r.reason) for r in summary.results}, analysed


def state_row(out: Path, name: str) -> tuple[str, str] | None:
    db = sqlite3.connect(out / STATE_DIR / "state.sqlite")
    try:
        row = db.execute("SELECT status, reason FROM inputs WHERE path LIKE ?", (f"%/{name}",)).fetchone()
    finally:
        db.close()
    return (row[0], row[1]) if row else None


def test_a_copy_is_recorded_once_and_not_read_again(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "a").mkdir(parents=True)
    (src / "b").mkdir()
    shutil.copy(PHOTOS[0], src / "a/one.jpg")
    shutil.copy(PHOTOS[1], src / "a/two.jpg")
    got, n = run(src, out)
    assert n == 2 and got["one.jpg"][0] == got["two.jpg"][0] == FileStatus.CONVERTED

    shutil.copy(PHOTOS[0], src / "b/copy.jpg")  # the same content in another folder
    got, n = run(src, out, dry_run=True)
    assert n == 1 and got["copy.jpg"] == (FileStatus.UNCHANGED, "duplicate")
    assert state_row(out, "copy.jpg") is None  # a dry run records nothing

    got, n = run(src, out)
    assert n == 1 and got["copy.jpg"] == (FileStatus.UNCHANGED, "duplicate")
    assert state_row(out, "copy.jpg") == ("unchanged", "duplicate")

    got, n = run(src, out)
    assert n == 0  # nothing read: the copy's row stands
    assert got["copy.jpg"] == (FileStatus.UNCHANGED, "duplicate")
    assert got["one.jpg"][0] == FileStatus.UNCHANGED

    st = (src / "b/copy.jpg").stat()
    os.utime(src / "b/copy.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    got, n = run(src, out)
    assert n == 1 and got["copy.jpg"] == (FileStatus.UNCHANGED, "duplicate")
    got, n = run(src, out)
    assert n == 0

    (src / "a/one.jpg").unlink()  # the original goes: the copy is converted in its own right
    got, n = run(src, out)
    assert n == 1 and got["copy.jpg"][0] == FileStatus.CONVERTED
    assert state_row(out, "copy.jpg") == ("done", "")
    got, n = run(src, out)
    assert n == 0 and got["copy.jpg"][0] == FileStatus.UNCHANGED


def test_a_copy_whose_original_lost_its_output_is_read_again(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy(PHOTOS[0], src / "one.jpg")
    run(src, out)
    shutil.copy(PHOTOS[0], src / "zcopy.jpg")
    run(src, out)
    assert state_row(out, "zcopy.jpg") == ("unchanged", "duplicate")
    for dcm in out.rglob("*.dcm"):
        dcm.unlink()  # someone cleaned the output folder
    got, n = run(src, out)
    assert n == 2  # both read again; one of them is converted again
    assert FileStatus.CONVERTED in {got["one.jpg"][0], got["zcopy.jpg"][0]}
    assert list(out.rglob("*.dcm"))
