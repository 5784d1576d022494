"""`convert --cluster`: the same batch on a Dask cluster, over loopback.

Real Dask: a LocalCluster of two single-threaded worker processes (started by `--cluster local:2`
inside the convert, or by the test and reached as tcp://127.0.0.1:PORT), a real `orthovision
convert` subprocess as the coordinator, real files. Faults are real too: `kill -9` of a worker
process (found through the scheduler) and of the coordinator.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clusters import TMP_GLOB, assert_same_as_local_pool, convert, instances, mixed_corpus
from corpus import LABEL_ARGS, assert_converted_once, make_corpus, outputs
from testdata import DATA, run_report

from orthovision_cli.errors import ExitCode

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::ResourceWarning")]


def _start(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "orthovision_cli", "convert", *args, "--quiet"],
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )


@pytest.fixture
def cluster() -> Iterator[Any]:
    """Two worker processes with one thread each, restarted by their nanny if killed."""
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
        ) as lc,
        distributed.Client(lc, set_as_default=False) as client,
    ):
        yield client


def test_cluster_gives_the_same_instances_as_the_local_pool(tmp_path: Path) -> None:
    src = tmp_path / "src"
    mixed_corpus(src)
    _, dask = assert_same_as_local_pool(src, tmp_path, "local:2")

    # A re-run on one machine of the cluster's output finds everything done.
    again = convert(str(src), "-o", str(dask), "--jobs", "2", "--on-uncertain", "convert", "--json")
    assert json.loads(again.stdout)["counts"] == {"unchanged": 14, "failed": 1, "ignored": 1}


def test_models_load_once_per_worker(cluster: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_corpus(src, 16, clutter=False)
    addr = cluster.scheduler.address
    before = cluster.run(
        lambda: __import__("orthovision_cli.batch.cluster_worker").batch.cluster_worker.LOADS
    )
    done = convert(
        str(src), "-o", str(tmp_path / "out"), "--cluster", addr, "--on-uncertain", "convert", "--json"
    )
    assert done.returncode == ExitCode.OK, done.stderr
    assert json.loads(done.stdout)["counts"] == {"converted": 16}
    after = cluster.run(lambda: __import__("orthovision_cli.batch.cluster_worker").batch.cluster_worker.LOADS)
    # 16 inputs, 32 tasks (analysis + writing) over two workers: one load of the pack each.
    assert {w: after[w] - before.get(w, 0) for w in after} == dict.fromkeys(after, 1)
    assert_converted_once(sorted(src.rglob("img*")), tmp_path / "out")


def _worker_pids(client: Any) -> dict[str, int]:
    return dict(client.run(os.getpid))


def test_worker_killed_mid_run_loses_nothing(cluster: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    inputs = make_corpus(src, 30, side=890, clutter=False)
    out = tmp_path / "out"
    proc = _start(
        str(src), "-o", str(out), *LABEL_ARGS, "--cluster", cluster.scheduler.address, log=tmp_path / "log"
    )
    pids = _worker_pids(cluster)
    victim = None
    t0 = time.monotonic()
    while victim is None and proc.poll() is None and time.monotonic() - t0 < 120:
        if len(outputs(out)) >= 3:
            busy = [w for w, keys in cluster.processing().items() if keys]
            if busy:
                victim = busy[0]
                os.kill(pids[victim], signal.SIGKILL)
                break
        time.sleep(0.01)
    assert victim is not None, "no worker was busy while the run was writing"
    assert proc.wait(180) == ExitCode.OK, (tmp_path / "log").read_text()
    files = assert_converted_once(inputs, out)  # every input once, no temp file, unique UIDs
    assert len(files) == 30
    cluster.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker
    assert _worker_pids(cluster).get(victim) != pids[victim]


def _poison(client: Any, name: str) -> None:
    """Fault injection: on every worker (restarted ones too), writing the input called `name`
    kills the worker process, every time, as an image too large for its memory would."""
    from distributed.diagnostics.plugin import WorkerPlugin

    from orthovision_cli.batch import write

    module = write.write_job.__module__  # where the task's function is found by name

    class Poison(WorkerPlugin):  # a local class: pickled by value, not by name
        def setup(self, worker: Any) -> None:
            import importlib

            mod = importlib.import_module(module)
            real = mod.write_job

            def write_job(job: Any) -> Any:
                if Path(job.plan.input.rel).name == name:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(job)

            setattr(mod, "write_job", write_job)  # noqa: B010

    client.register_plugin(Poison(), name="poison")


@pytest.mark.parametrize("batch", ["1", "8"])
def test_an_input_that_keeps_killing_workers_fails_alone(tmp_path: Path, batch: str) -> None:
    """Dask runs a task again when its worker dies; one that killed its workers more than
    `allowed-failures` times is `KilledWorker`. A batch of inputs is then split and each input
    run again alone: only the culprit fails (`worker-lost`), the batch goes on, exit code 4,
    and the next run converts it (here, on one machine)."""
    src = tmp_path / "src"
    inputs = make_corpus(src, 24, side=256, clutter=False)
    out = tmp_path / "out"
    import dask

    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
        ) as lc,
        distributed.Client(lc, set_as_default=False) as client,
    ):
        _poison(client, "img0005.png")
        proc = _start(
            str(src), "-o", str(out), *LABEL_ARGS, "--cluster", lc.scheduler.address,
            log=tmp_path / "log", env={"ORTHOVISION_CLUSTER_BATCH": batch},
        )  # fmt: skip
        code = proc.wait(240)
    report = run_report(out)
    failed = [(f["rel"], f["reason"]) for f in report["files"] if f["status"] == "failed"]
    assert code == ExitCode.SOME_FAILED, (report["counts"], report["fatal"], (tmp_path / "log").read_text())
    # Dask blames every task queued on a worker when it dies: an input waiting behind the
    # culprit may be declared lost with it (at most one a death here); the batch goes on.
    assert ("visit00/img0005.png", "worker-lost") in failed and len(failed) <= 3, failed
    assert {reason for _, reason in failed} == {"worker-lost"}
    assert report["counts"] == {"converted": 24 - len(failed), "failed": len(failed)}
    assert "died" in next(f["message"] for f in report["files"] if f["status"] == "failed")
    assert list(out.rglob(TMP_GLOB)) == []
    again = convert(str(src), "-o", str(out), *LABEL_ARGS, "--jobs", "2", "--json")
    assert json.loads(again.stdout)["counts"] == {"unchanged": 24 - len(failed), "converted": len(failed)}
    assert_converted_once(inputs, out)


def _descendants(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(pids: list[int]) -> list[int]:
    import psutil

    return [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


def test_coordinator_killed_mid_run_then_rerun(tmp_path: Path) -> None:
    src = tmp_path / "src"
    inputs = make_corpus(src, 30, side=890, clutter=False)
    out = tmp_path / "out"
    args = (str(src), "-o", str(out), *LABEL_ARGS, "--cluster", "local:2")
    proc = _start(*args, log=tmp_path / "log")
    t0 = time.monotonic()
    while proc.poll() is None and len(outputs(out)) < 5 and time.monotonic() - t0 < 120:
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before the kill"
    workers = _descendants(proc.pid)
    assert len(workers) >= 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 5 <= len(outputs(out)) < 30
    deadline = time.monotonic() + 10
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(workers) == [], "Dask workers outlived their coordinator"
    rerun = convert(*args, "--json")
    assert rerun.returncode == ExitCode.OK, rerun.stderr
    counts = json.loads(rerun.stdout)["counts"]
    # Outputs named but not yet recorded when the kill came are written again (same name, UIDs).
    assert counts.get("unchanged", 0) + counts.get("converted", 0) == 30, counts
    assert_converted_once(inputs, out)


def test_coordinator_killed_while_an_outside_cluster_works_on(cluster: Any, tmp_path: Path) -> None:
    """An outside cluster outlives the coordinator; its last tasks must not leave files that
    nobody commits (the run's lease), and a re-run on the same cluster completes the job."""
    src = tmp_path / "src"
    inputs = make_corpus(src, 24, side=890, clutter=False)
    out = tmp_path / "out"
    args = (str(src), "-o", str(out), *LABEL_ARGS, "--cluster", cluster.scheduler.address)
    proc = _start(*args, log=tmp_path / "log")
    t0 = time.monotonic()
    while proc.poll() is None and len(outputs(out)) < 3 and time.monotonic() - t0 < 120:
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before the kill"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rerun = convert(*args, "--json")
    assert rerun.returncode == ExitCode.OK, rerun.stderr
    assert_converted_once(inputs, out)
    time.sleep(1.0)  # anything the old run's tasks still had in hand is gone as well
    assert list(out.rglob(TMP_GLOB)) == []


def test_bad_cluster_spec_and_unreachable_scheduler(tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_corpus(src, 2, side=64, clutter=False)
    bad = convert(str(src), "-o", str(tmp_path / "out"), *LABEL_ARGS, "--cluster", "slurm")
    assert bad.returncode == ExitCode.USAGE
    assert "--cluster must be local:N or a scheduler address" in bad.stderr
    assert "Traceback" not in bad.stderr
    (tmp_path / "c.toml").write_text('cluster = "local:0"\n')
    zero = convert(str(src), "-o", str(tmp_path / "out"), *LABEL_ARGS, "--config", str(tmp_path / "c.toml"))
    assert zero.returncode == ExitCode.USAGE and "1 to 512 workers" in zero.stderr
    for spec in ("tcp://127.0.0.1", "tcp://127.0.0.1:abc", "tls://[::1]:99999"):  # Dask's Client: a traceback
        port = convert(str(src), "-o", str(tmp_path / "out"), *LABEL_ARGS, "--cluster", spec, timeout=60)
        assert port.returncode == ExitCode.USAGE and "scheduler address" in port.stderr, port.stderr
    gone = convert(
        str(src),
        "-o",
        str(tmp_path / "out"),
        *LABEL_ARGS,
        "--cluster",
        "tcp://127.0.0.1:9",
        env={"ORTHOVISION_CLUSTER_TIMEOUT": "2"},
        timeout=60,
    )
    assert gone.returncode == ExitCode.FATAL, gone.stderr
    lines = gone.stderr.strip().splitlines()
    assert any("cannot reach the Dask scheduler at tcp://127.0.0.1:9" in ln for ln in lines), lines
    assert "Traceback" not in gone.stderr and outputs(tmp_path / "out") == []


def test_scheduler_lost_mid_run_stops_cleanly_and_a_rerun_completes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    inputs = make_corpus(src, 30, side=890, clutter=False)
    out = tmp_path / "out"
    lc = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    )
    try:
        with (tmp_path / "log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "orthovision_cli", "convert", str(src), "-o", str(out), *LABEL_ARGS,
                 "--cluster", lc.scheduler.address],
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "ORTHOVISION_CLUSTER_TIMEOUT": "3"},
            )  # fmt: skip
        t0 = time.monotonic()
        while proc.poll() is None and len(outputs(out)) < 3 and time.monotonic() - t0 < 120:
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before the scheduler went"
    finally:
        lc.close()
    code = proc.wait(120)
    text = (tmp_path / "log").read_text()
    assert code == ExitCode.FATAL, text
    assert "Traceback" not in text and "stopped: cluster: lost the Dask scheduler" in text
    report = run_report(out)
    assert report["fatal"] and report["counts"].get("converted", 0) >= 1
    assert list(out.rglob(TMP_GLOB)) == []
    again = convert(str(src), "-o", str(out), *LABEL_ARGS, "--jobs", "2")
    assert again.returncode == ExitCode.OK, again.stderr
    assert_converted_once(inputs, out)


def test_remote_classification_stays_on_the_coordinator(cluster: Any, tmp_path: Path) -> None:
    """--remote with --cluster: the coordinator asks the service (its token and its network
    stay there), the workers only write; the result is the one-machine result."""
    pytest.importorskip("starlette")
    from orthovision_cli.batch.runner import run_convert
    from orthovision_cli.config import ConvertSettings, RemoteSettings
    from orthovision_cli.labels.local import load_pack
    from orthovision_cli.server.app import create_app
    from orthovision_cli.server.config import ServerConfig
    from orthovision_cli.server.runner import serve_in_thread

    src = tmp_path / "src"
    src.mkdir()
    for name in ("003f.jpg", "008f.jpg", "010f.jpg"):
        shutil.copy(DATA / "photos/faces_canada" / name, src / name)
    loads = "orthovision_cli.batch.cluster_worker"
    before = cluster.run(lambda: __import__(loads).batch.cluster_worker.LOADS)
    with serve_in_thread(create_app(load_pack(None), ServerConfig(workers=1))) as url:

        def run(out: Path, where: str | None) -> Any:
            return run_convert(ConvertSettings(
                inputs=[src], output=out, use_models=False, remote=url, cluster=where,
                remote_options=RemoteSettings(concurrency=2), on_uncertain="convert", jobs=2,
                patient={"patient_id": "R1", "study_date": "2024-02-02"}))  # fmt: skip

        here = run(tmp_path / "here", None)
        (tmp_path / "there" / ".orthovision").mkdir(parents=True)
        shutil.copy(tmp_path / "here/.orthovision/uid-secret", tmp_path / "there/.orthovision/uid-secret")
        there = run(tmp_path / "there", cluster.scheduler.address)
    assert there.exit_code == here.exit_code == ExitCode.OK

    def facts(summary: Any) -> list[Any]:  # the service's task ids differ from call to call
        return sorted(
            (r.rel, r.status, r.outputs, {t: {**lab, "detail": None} for t, lab in r.labels.items() if lab})
            for r in summary.results
        )

    assert facts(here) == facts(there)
    assert all(r.labels["modality"]["source"] == "remote" for r in there.results)
    assert instances(tmp_path / "here") == instances(tmp_path / "there")
    # The workers loaded a context without any classifier (the plugin ran, nothing heavy).
    after = cluster.run(lambda: __import__(loads).batch.cluster_worker.LOADS)
    assert all(after[w] - before.get(w, 0) == 1 for w in after)
