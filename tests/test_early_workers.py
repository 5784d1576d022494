"""A nightly run over a large state starts its workers before the walk and they load the stages
(numpy, Pillow, pydicom) during the triage, so the main process never loads them (issue 25: it
is the critical path of a run that adds 1 %); a run that finds nothing new stops them again."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
from testdata import DATA

from orthovision_cli.batch import output_check, pool, runner
from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings
from orthovision_cli.manifest import UserInput
from orthovision_cli.types import FileStatus

PHOTOS = sorted((DATA / "photos/faces_london/rest").glob("*.jpg"))[:5]
HEAVY = ("numpy", "PIL", "pydicom", "tifffile")

# The second run in a fresh interpreter, its state counted as large (APART_FROM 0): what it did
# to each file, whether it started its workers early, and which heavy packages it loaded.
SECOND_RUN = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from orthovision_cli.batch import output_check, pool, runner
    from orthovision_cli.batch.runner import run_convert
    from orthovision_cli.config import ConvertSettings

    output_check.APART_FROM = 0
    output_check.os.sched_getaffinity = lambda pid: {0, 1}
    early = []
    real = pool.early_executor
    def spy(settings, user):
        got = real(settings, user)
        early.append(got is not None)
        return got
    runner.early_executor = spy
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    settings = ConvertSettings(
        inputs=[src], output=out, use_models=False, labels={"modality": "XC"}, jobs=2
    )
    summary = run_convert(settings)
    print(json.dumps({
        "status": {Path(r.path).name: str(r.status) for r in summary.results},
        "early": early,
        "heavy": sorted(m for m in sys.argv[3].split(",") if m in sys.modules),
    }))
    """
)


def convert(src: Path, out: Path) -> dict[str, str]:
    settings = ConvertSettings(inputs=[src], output=out, use_models=False, labels={"modality": "XC"}, jobs=2)
    return {Path(r.path).name: str(r.status) for r in run_convert(settings).results}


@pytest.fixture
def converted(converted_photos: tuple[Path, Path]) -> tuple[Path, Path]:
    return converted_photos


def second_run(src: Path, out: Path) -> dict[str, Any]:
    """SECOND_RUN in a fresh interpreter: its statuses, whether it started workers early, and
    the heavy packages its main process loaded."""
    done = subprocess.run(
        [sys.executable, "-c", SECOND_RUN, str(src), str(out), ",".join(HEAVY)],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_a_new_file_is_converted_by_workers_started_early(converted: tuple[Path, Path]) -> None:
    src, out = converted
    shutil.copy(PHOTOS[4], src / PHOTOS[4].name)
    got = second_run(src, out)
    assert got["early"] == [True]
    assert got["status"][PHOTOS[4].name] == FileStatus.CONVERTED
    assert {got["status"][p.name] for p in PHOTOS[:4]} == {FileStatus.UNCHANGED}
    # The workers loaded the stages; the main process planned, committed and recorded without them.
    assert got["heavy"] == []
    written = [p for p in out.rglob("*.dcm") if not any(x.startswith(".") for x in p.parts)]
    assert len(written) == 5
    assert {pydicom.dcmread(p, stop_before_pixels=True).Modality for p in written} == {"XC"}


def test_a_changed_file_alone_opens_the_gate_after_the_triage(converted: tuple[Path, Path]) -> None:
    """No input the state never saw: the workers wait until the triage finds the changed one,
    then load the stages and convert it (a gate left shut would hang the run)."""
    src, out = converted
    changed = src / PHOTOS[0].name
    changed.write_bytes(PHOTOS[4].read_bytes())  # other content under a known name
    got = second_run(src, out)
    assert got["early"] == [True]
    assert got["status"][changed.name] == FileStatus.CONVERTED
    assert {got["status"][p.name] for p in PHOTOS[1:4]} == {FileStatus.UNCHANGED}


def test_a_run_with_nothing_new_stops_the_early_workers(
    converted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = converted
    started: list[pool.EarlyWorkers | None] = []

    def spy(settings: ConvertSettings, user: object) -> pool.EarlyWorkers | None:
        got = pool.early_executor(settings, user)  # type: ignore[arg-type]
        started.append(got)
        return got

    monkeypatch.setattr(output_check, "APART_FROM", 0)
    monkeypatch.setattr(output_check.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(runner, "early_executor", spy)
    before = set(multiprocessing.active_children())
    try:
        assert set(convert(src, out).values()) == {FileStatus.UNCHANGED}
        assert len(started) == 1 and started[0] is not None
        # Nothing to do: their gate was never opened (no stages loaded for nothing), and they
        # are stopped with the run.
        assert not started[0].opened
        assert set(multiprocessing.active_children()) - before == set()
    finally:
        for early in started:
            if early is not None:  # never leave a worker waiting at its gate (a hung exit)
                early.begin()
                early.drop()


def test_models_a_remote_service_or_a_cluster_start_the_pool_later(tmp_path: Path) -> None:
    base = {"inputs": [tmp_path], "output": tmp_path / "out"}
    user = object()
    for settings in (
        ConvertSettings(**base, use_models=True),  # type: ignore[arg-type]
        ConvertSettings(**base, use_models=False, remote="http://127.0.0.1:9/fhir"),  # type: ignore[arg-type]
        ConvertSettings(**base, use_models=False, cluster="local:1"),  # type: ignore[arg-type]
    ):
        assert pool.early_executor(settings, user) is None  # type: ignore[arg-type]


# The same second run through the command line, its walk slowed so that a Ctrl-C reaches the
# workers while they wait at their gate.
INTERRUPTED_RUN = textwrap.dedent(
    """
    import sys, time
    from orthovision_cli.batch import output_check, runner
    from orthovision_cli.cli import main

    output_check.APART_FROM = 0
    output_check.os.sched_getaffinity = lambda pid: {0, 1}
    real_find = runner._find
    def slow_find(*args):
        print("walking", flush=True)
        time.sleep(30)
        return real_find(*args)
    runner._find = slow_find
    sys.argv = ["orthovision", "convert", sys.argv[1], "-o", sys.argv[2], "--no-models",
                "--modality", "XC", "--jobs", "2", "--quiet"]
    main()
    """
)


def test_ctrl_c_while_the_early_workers_wait_stops_the_run_at_once(converted: tuple[Path, Path]) -> None:
    src, out = converted
    proc = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED_RUN, str(src), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "walking"
        time.sleep(1.0)  # the workers forked and waiting at their gate
        os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches every process of the group
        # The workers are stopped with it: a worker left at its gate would hold the exit for ever.
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted" in err


def _asleep(pid: int, polls: int = 6) -> None:
    """Until process `pid` has slept for `polls` looks in a row (waiting at the gate)."""
    asleep = 0
    for _ in range(400):
        time.sleep(0.05)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        asleep = asleep + 1 if state == "S" else 0
        if asleep >= polls:
            return


def test_a_worker_waiting_at_its_gate_leaves_ctrl_c_to_the_main_process(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    gate = pool.Gate(ctx.Semaphore(0), ctx.Lock())
    settings = ConvertSettings(inputs=[tmp_path], output=tmp_path / "out", use_models=False)
    user = UserInput({}, {})
    worker = ctx.Process(target=pool._init_pool_worker, args=(os.getpid(), settings, user, gate))
    worker.start()
    try:
        assert worker.pid is not None
        _asleep(worker.pid)  # at the gate, its set-up done
        os.kill(worker.pid, signal.SIGINT)
        time.sleep(0.3)
        assert worker.is_alive()  # a KeyboardInterrupt would have ended it
        gate.open()
        worker.join(60)
        assert worker.exitcode == 0  # it loaded the stages and ended its set-up
    finally:
        if worker.is_alive():
            worker.kill()


def test_a_worker_killed_at_its_gate_does_not_hold_the_others(tmp_path: Path) -> None:
    """A worker killed while it waits (out of memory, a user's kill): opening the gate returns at
    once and the other worker goes through (an Event's set() waits for every waiter to wake and
    would hang the run for ever: checked)."""
    ctx = multiprocessing.get_context("fork")
    gate = pool.Gate(ctx.Semaphore(0), ctx.Lock())
    settings = ConvertSettings(inputs=[tmp_path], output=tmp_path / "out", use_models=False)
    user = UserInput({}, {})
    workers = [
        ctx.Process(target=pool._init_pool_worker, args=(os.getpid(), settings, user, gate)) for _ in range(2)
    ]
    for w in workers:
        w.start()
    try:
        for w in workers:
            assert w.pid is not None
            _asleep(w.pid)
        workers[0].kill()
        workers[0].join(10)
        opening = threading.Thread(target=gate.open, args=(2,), daemon=True)
        opening.start()
        opening.join(10)
        assert not opening.is_alive()
        workers[1].join(60)
        assert workers[1].exitcode == 0  # through the gate, the stages loaded
    finally:
        for w in workers:
            if w.is_alive():
                w.kill()


def test_a_stage_that_fails_to_load_early_does_not_break_the_pool(
    converted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A codec that fails to load at a worker's start (a broken install) must not end in every
    file `worker-crashed` (skipped by later runs): the worker lives on, its tasks load the stage
    again (here it loads: the fault is in the early load alone)."""
    src, out = converted
    shutil.copy(PHOTOS[4], src / PHOTOS[4].name)

    def broken() -> None:
        raise ImportError("libcodec.so: cannot open shared object file")

    monkeypatch.setattr(output_check, "APART_FROM", 0)
    monkeypatch.setattr(output_check.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(pool, "load_stages", broken)  # the workers are forked: they inherit it
    status = convert(src, out)
    assert status[PHOTOS[4].name] == FileStatus.CONVERTED
    assert {status[p.name] for p in PHOTOS[:4]} == {FileStatus.UNCHANGED}
