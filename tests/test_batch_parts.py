"""Issue 25: a run with many new inputs is analysed, planned and written in parts of whole
folders (`ORTHOVISION_PART_INPUTS`), so that the coordinator holds one part, not the whole run.
What it writes must not depend on the parts: the same files, names, UIDs and numbers as one part,
a copy of earlier content never converted twice (with --force too), and progress counted over the
whole run."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pexpect
import pydicom
import pytest
from corpus import LABEL_ARGS, make_corpus
from testdata import orthovision, run_report

from orthovision_cli.errors import ExitCode

N = 25  # visit00, visit01 (10 each), visit02 (5)


def _convert(src: Path, out: Path, part: int, *extra: str) -> str:
    env = {**os.environ, "ORTHOVISION_PART_INPUTS": str(part)}
    key = src.parent / "uid.key"  # both outputs: the same UIDs for the same plans
    args = ["convert", str(src), "-o", str(out), *LABEL_ARGS, "--jobs", "2", "--uid-secret", str(key)]
    proc = orthovision(*args, *extra, env=env)
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr


def _written(out: Path) -> dict[str, tuple[str, ...]]:
    """Every file written, by its name below `out`: its UIDs and numbers."""
    found: dict[str, tuple[str, ...]] = {}
    for p in sorted(out.rglob("*.dcm")):
        if ".orthovision" in p.parts:
            continue
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        found[p.relative_to(out).as_posix()] = (
            str(ds.SOPInstanceUID),
            str(ds.StudyInstanceUID),
            str(ds.SeriesInstanceUID),
            str(ds.SeriesNumber),
            str(ds.InstanceNumber),
            str(ds.get("StudyDescription", "")),
        )
    return found


def _statuses(out: Path) -> dict[str, tuple[str, str]]:
    return {f["input"]: (f["status"], f["reason"]) for f in run_report(out)["files"]}


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(("--patient-id", "P-1"), id="a-study-per-folder"),
        # One plan group for all three folders: the later parts join the earlier parts' study.
        pytest.param(("--patient-id", "P-1", "--study-date", "2020-02-03"), id="one-study-across-parts"),
        pytest.param((), id="unknown-patient"),
    ],
)
def test_parts_write_what_one_part_writes(tmp_path: Path, extra: tuple[str, ...]) -> None:
    src = tmp_path / "src"
    make_corpus(src, N)
    whole_err = _convert(src, tmp_path / "whole", 100000, *extra)
    parts_err = _convert(src, tmp_path / "parts", 10, *extra)  # three parts: a folder each
    whole, parts = _written(tmp_path / "whole"), _written(tmp_path / "parts")
    assert len(whole) == N
    assert parts == whole
    assert _statuses(tmp_path / "parts") == _statuses(tmp_path / "whole")
    # The run's warnings once, counted over the run (not a line per part).
    for err in (whole_err, parts_err):
        assert err.count("written without a Patient ID") == (0 if extra else 1)
    if not extra:
        assert f"{N} instance(s) written without a Patient ID" in parts_err
        assert "one unknown patient (no Patient ID, no name) holds 3 studies" in parts_err
    # Progress over the whole run, on a log (no terminal): the last lines count every input.
    assert f"orthovision: analysing {N}/{N}" in parts_err and f"orthovision: writing {N}/{N}" in parts_err
    assert "analysing 10/10" not in parts_err


@pytest.mark.parametrize("force", [False, True], ids=["first-run", "force"])
def test_a_copy_in_a_later_part_is_not_converted_twice(tmp_path: Path, force: bool) -> None:
    src = tmp_path / "src"
    files = make_corpus(src, 12)  # visit00 (10), visit01 (2)
    shutil.copyfile(files[0], src / "visit01" / "copy-of-first.jpg")
    out = tmp_path / "out"
    _convert(src, out, 10)
    if force:
        _convert(src, out, 10, "--force")
    statuses = _statuses(out)
    copy = next(s for p, s in statuses.items() if p.endswith("copy-of-first.jpg"))
    assert copy == ("unchanged", "duplicate")
    assert len(_written(out)) == 12  # the original once, the copy not at all


def test_progress_in_a_terminal_counts_the_whole_run_over_its_parts(tmp_path: Path) -> None:
    """In a real pseudo-terminal the live bars are drawn: one for analysing and one for
    writing, each counting the run's inputs, while the run goes part by part (three here)."""
    src = tmp_path / "src"
    make_corpus(src, N)
    args = [str(src), "-o", str(tmp_path / "out"), *LABEL_ARGS, "--jobs", "1", "--patient-id", "P-1"]
    child = pexpect.spawn(
        sys.executable,
        ["-m", "orthovision_cli", "convert", *args],
        encoding="utf-8",
        timeout=120,
        dimensions=(40, 120),
        env={
            "PATH": "/usr/bin:/bin",
            "TERM": "xterm-256color",
            "PYTHONPATH": str(Path.cwd()),
            "ORTHOVISION_PART_INPUTS": "10",
        },
    )
    child.expect(pexpect.EOF)
    child.close()
    text = child.before or ""
    assert child.exitstatus == ExitCode.OK, text
    assert "Traceback" not in text and "internal error" not in text, text
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # colours and cursor moves
    shown = re.findall(r"(analysing|writing)\D+(\d+)/(\d+)", plain)
    assert shown, text
    assert {total for _, _, total in shown} == {str(N)}  # never a part's count
    assert {stage for stage, _, _ in shown} == {"analysing", "writing"}
    assert ("writing", str(N), str(N)) in shown
    assert "exit code 0" in text


def test_the_pool_is_sized_for_the_whole_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The workers are made for the run's inputs, not for what is left of a list the parts
    have taken over (seen: one worker for `--jobs 2`, because the list was emptied first)."""
    from orthovision_cli.batch import runner
    from orthovision_cli.config import ConvertSettings

    src = tmp_path / "src"
    make_corpus(src, 12, clutter=False)
    asked: list[int] = []
    real = runner.make_executor

    def spy(settings: object, user: object, n_items: int, io_bound: bool = False) -> object:
        asked.append(n_items)
        return real(settings, user, n_items, io_bound)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "make_executor", spy)
    monkeypatch.setattr(runner, "PART_INPUTS", 10)
    settings = ConvertSettings(
        inputs=[src], output=tmp_path / "out", use_models=False, labels={"modality": "OT"}, jobs=2
    )
    summary = runner.run_convert(settings)
    assert summary.exit_code == ExitCode.OK and summary.counts == {"converted": 12}
    assert asked == [12]
