"""Crash safety: `kill -9` of a real `orthovision convert` process at several moments, then a
re-run, leaves every input converted exactly once, valid, and nothing partial behind.

Each run is a real subprocess (`python -m orthovision_cli convert`) over a real corpus; the kill
is SIGKILL of the main process only, as `kill -9 <pid>` does: its worker processes must not
live on. Moments are both times after start (import, walk, analysis...) and events seen in the
output tree (the state opened, the first file written, half the files written).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import dciodvfy
from corpus import assert_converted_once, convert_command, make_corpus, outputs, run_convert_process
from testdata import run_report

from orthovision_cli.batch.state import StateStore
from orthovision_cli.errors import ExitCode

N_INPUTS = 36
TMP_GLOB = ".orthovision-tmp-*"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    src = tmp_path_factory.mktemp("corpus")
    return src, make_corpus(src, N_INPUTS)


def _start(src: Path, out: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as f:
        return subprocess.Popen(convert_command(src, out, "--quiet"), stdout=f, stderr=subprocess.STDOUT)


# What to wait for before the kill: a time, or a condition on the output tree.
def _after(seconds: float) -> Callable[[Path, float], bool]:
    return lambda out, t0: time.monotonic() - t0 >= seconds


def _state_open(out: Path, t0: float) -> bool:
    return (out / ".orthovision" / "state.sqlite").exists()


def _writing(out: Path, t0: float) -> bool:
    # A temp file (a write in progress) or the first finished output.
    return any(out.rglob(TMP_GLOB)) or bool(outputs(out))


def _half_written(out: Path, t0: float) -> bool:
    return len(outputs(out)) >= N_INPUTS // 2


MOMENTS: dict[str, Callable[[Path, float], bool]] = {
    "0.3s": _after(0.3),
    "0.8s": _after(0.8),
    "1.5s": _after(1.5),
    "state-open": _state_open,
    "writing": _writing,
    "half-written": _half_written,
}


def _pids_writing_to(out: Path) -> list[int]:
    """Processes (the main one or orphaned workers) whose command line names `out`."""
    pids = []
    needle = str(out).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def _kill_at(src: Path, out: Path, moment: str, log: Path) -> list[Path]:
    """Start a run, SIGKILL its main process at `moment`; returns the outputs present then."""
    when = MOMENTS[moment]
    proc = _start(src, out, log)
    t0 = time.monotonic()
    while proc.poll() is None and not when(out, t0):
        if time.monotonic() - t0 > 60:
            proc.kill()
            pytest.fail(f"moment {moment} never came")
        time.sleep(0.005)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    present = outputs(out)
    if Path("/proc").is_dir():
        # Pool workers must die with their parent, not finish files behind the next run's back.
        deadline = time.monotonic() + 5
        while _pids_writing_to(out) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _pids_writing_to(out) == [], "worker processes outlived the killed run"
    return present


def _validate(files: list[Path]) -> None:
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(dciodvfy, files))
    bad = {f.name: errors for f, (errors, _) in zip(files, results, strict=True) if errors}
    assert bad == {}


@pytest.mark.slow
@pytest.mark.external
@pytest.mark.parametrize("moment", ["0.3s", "0.8s", "1.5s", "writing"])
def test_kill_then_rerun_completes(corpus: tuple[Path, list[Path]], tmp_path: Path, moment: str) -> None:
    src, inputs = corpus
    out = tmp_path / "out"
    survivors = _kill_at(src, out, moment, tmp_path / "log")
    rerun = run_convert_process(src, out, "--quiet")
    assert rerun.returncode == ExitCode.OK, rerun.stderr
    files = assert_converted_once(inputs, out)
    # At risk: the files written last before the kill (dciodvfy costs ~0.1 s a file; the test
    # below checks every output).
    at_risk = sorted(survivors, key=lambda f: f.stat().st_mtime_ns)[-4:]
    _validate(at_risk + [f for f in files if f not in survivors][:2])


@pytest.mark.slow
@pytest.mark.external
def test_killed_again_and_again_then_finished_then_idle(
    corpus: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    src, inputs = corpus
    out = tmp_path / "out"
    for moment in ("state-open", "writing", "half-written"):
        _kill_at(src, out, moment, tmp_path / "log")
    rerun = run_convert_process(src, out, "--quiet")
    assert rerun.returncode == ExitCode.OK, rerun.stderr
    files = assert_converted_once(inputs, out)
    _validate(files)
    report = run_report(out)
    assert report["exit_code"] == 0 and report["fatal"] == ""

    # A finished job: the next run converts nothing and touches no output.
    before = {f: f.stat().st_mtime_ns for f in files}
    idle = run_convert_process(src, out, "--json")
    assert idle.returncode == ExitCode.OK, idle.stderr
    assert json.loads(idle.stdout)["counts"] == {"unchanged": N_INPUTS}
    assert {f: f.stat().st_mtime_ns for f in outputs(out)} == before


def test_second_run_on_same_output_is_refused(corpus: tuple[Path, list[Path]], tmp_path: Path) -> None:
    src, inputs = corpus
    out = tmp_path / "out"
    first = _start(src, out, tmp_path / "log")
    try:
        t0 = time.monotonic()
        while first.poll() is None and not _state_open(out, t0):
            time.sleep(0.005)
        # Freeze the first run while it holds the output tree: the two now overlap for certain.
        first.send_signal(signal.SIGSTOP)
        second = run_convert_process(src, out)
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(120) == ExitCode.OK
    assert second.returncode == ExitCode.FATAL
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "another orthovision run is writing to" in lines[0], lines
    assert "Traceback" not in second.stderr
    assert_converted_once(inputs, out)


def test_lock_held_in_process_refuses_cli(corpus: tuple[Path, list[Path]], tmp_path: Path) -> None:
    src, _ = corpus
    out = tmp_path / "out"
    with StateStore(out):
        refused = run_convert_process(src, out, "--quiet")
    assert refused.returncode == ExitCode.FATAL
    assert "another orthovision run" in refused.stderr and "Traceback" not in refused.stderr
    assert outputs(out) == []
    assert run_convert_process(src, out, "--quiet").returncode == ExitCode.OK  # the lock went with its holder
