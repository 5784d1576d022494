"""A full disk stops the run cleanly (exit 5, one line, no traceback, nothing partial) and the
next run, once there is room, finishes the job with every input converted exactly once.

Two ways: a real, tiny tmpfs as the output folder (needs the right to mount, e.g. root in a
container; skipped otherwise), and ENOSPC injected into the DICOM writer (always runs).
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from corpus import LABEL_ARGS, assert_converted_once, make_corpus, outputs, run_convert_process
from testdata import run_report
from typer.testing import CliRunner

from orthovision_cli.cli import app
from orthovision_cli.dicom import writer
from orthovision_cli.errors import ExitCode

N_INPUTS = 24


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    src = tmp_path_factory.mktemp("corpus")
    return src, make_corpus(src, N_INPUTS)


def _mount(*args: str) -> bool:
    mount = shutil.which("mount")
    if mount is None:
        return False
    return subprocess.run([mount, *args], capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 640 KiB tmpfs: room for the state and a few outputs, not for the whole job."""
    where = tmp_path / "disk"
    where.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=640k", "tmpfs", str(where)):
        pytest.skip("cannot mount a tmpfs here (needs CAP_SYS_ADMIN); the injected test covers it")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_real_full_disk_stops_cleanly_and_rerun_continues(
    corpus: tuple[Path, list[Path]], small_disk: Path
) -> None:
    src, inputs = corpus
    out = small_disk / "out"
    full = run_convert_process(src, out)
    assert full.returncode == ExitCode.FATAL, full.stderr
    assert "Traceback" not in full.stderr
    assert "No space left on device" in full.stderr or "disk is full" in full.stderr, full.stderr
    assert list(out.rglob(".orthovision-tmp-*")) == []
    written = len(outputs(out))
    assert written < N_INPUTS
    assert _mount("-o", "remount,size=16m", str(small_disk))
    rerun = run_convert_process(src, out, "--json")
    assert rerun.returncode == ExitCode.OK, rerun.stderr
    counts = json.loads(rerun.stdout)["counts"]
    assert counts.get("converted", 0) >= N_INPUTS - written
    assert_converted_once(inputs, out)


def test_injected_enospc_stops_cleanly_and_rerun_continues(
    corpus: tuple[Path, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, inputs = corpus
    out = tmp_path / "out"
    real = writer.write_all
    calls = 0

    def filling_up(fd: int, data: bytes | memoryview) -> None:
        nonlocal calls
        calls += 1
        if calls > 30:  # a few files fit, then the disk is full (a write is 3-4 calls)
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(writer, "write_all", filling_up)
    args = ["convert", str(src), "-o", str(out), *LABEL_ARGS, "--jobs", "1"]
    full = CliRunner().invoke(app, args)
    text = full.stdout + full.stderr
    assert full.exit_code == ExitCode.FATAL, text
    assert "Traceback" not in text
    assert "No space left on device" in text and "run the same command again" in text, text
    written = outputs(out)
    assert 0 < len(written) < N_INPUTS
    assert list(out.rglob(".orthovision-tmp-*")) == []
    report = run_report(out)
    assert report["exit_code"] == ExitCode.FATAL and "No space left" in report["fatal"]
    assert report["counts"]["converted"] == len(written)
    # Every input is in the report: those the stop left unwritten say so (issue 27).
    assert len(report["files"]) == N_INPUTS
    stopped = [f for f in report["files"] if f["reason"] == "run-stopped"]
    assert len(stopped) == N_INPUTS - len(written)
    assert all(f["status"] == "failed" and "run the same command again" in f["message"] for f in stopped)

    monkeypatch.undo()
    rerun = CliRunner().invoke(app, [*args, "--json"])
    assert rerun.exit_code == ExitCode.OK, rerun.stderr
    counts = json.loads(rerun.stdout)["counts"]
    assert counts == {"unchanged": len(written), "converted": N_INPUTS - len(written)}
    assert_converted_once(inputs, out)
