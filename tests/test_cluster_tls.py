"""`convert --cluster tls://...`: the Security recipe of docs/cluster.md, end to end on loopback.

Everything is real and done as the document tells a user: a CA and certificates made with
`openssl`, a `dask scheduler --protocol tls` and a `dask worker` (two single-threaded worker
processes) started as programs with their certificates, and an `orthovision convert` process
whose Dask client reads its certificates from the DASK_DISTRIBUTED__COMM__TLS__* variables.
Then what a mistake gives: no TLS configuration, a certificate from another CA, a `tcp://`
address for the TLS scheduler: one line, the documented exit code, no file written; and a
worker whose certificate is for servers only is refused, as the document warns.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from clusters import TMP_GLOB, assert_same_as_local_pool, convert, mixed_corpus
from conftest import REPO, require_tool
from corpus import LABEL_ARGS, assert_converted_once, make_corpus, outputs

from orthovision_cli.errors import ExitCode

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.slow, pytest.mark.external, pytest.mark.filterwarnings("ignore::ResourceWarning")]

DOC = REPO / "docs" / "cluster.md"
START_S = 60  # for the scheduler to write its address, for the workers to register
HOST = "scheduler-host"  # the doc's name for the scheduler's host


def _recipe(first: str, lang: str = "sh") -> str:
    """The `lang` block of docs/cluster.md that holds `first`: the tests run the doc's text."""
    blocks = re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)
    found = [b for b in blocks if first in b]
    assert len(found) == 1, f"docs/cluster.md has no (single) block with {first!r}"
    return found[0]


def _command(first: str) -> list[str]:
    """The doc's line that starts with `first`, as arguments."""
    line = next(ln for ln in _recipe(first).splitlines() if ln.startswith(first))
    return shlex.split(line)


def make_certificates(folder: Path) -> None:
    """The CA and the scheduler's, the workers' and the coordinator's certificates, made in
    `folder` by the openssl commands of docs/cluster.md#security; the scheduler is 127.0.0.1."""
    openssl = require_tool("openssl")
    script = _recipe("openssl req -x509")
    assert f"DNS:{HOST}" in script
    folder.mkdir(parents=True)
    subprocess.run(
        ["bash", "-euc", script.replace(f"DNS:{HOST}", "IP:127.0.0.1,DNS:localhost")],
        cwd=folder,
        env={**os.environ, "PATH": os.pathsep.join((str(Path(openssl).parent), os.environ["PATH"]))},
        check=True,
        capture_output=True,
        timeout=120,
    )


def client_env(certs: Path) -> dict[str, str]:
    """The coordinator's TLS settings: the variables docs/cluster.md exports, their files in
    `certs`."""
    env = {}
    for line in _recipe("export DASK_DISTRIBUTED__COMM__").splitlines():
        if line.startswith("export "):
            key, value = line.removeprefix("export ").split("=", 1)
            env[key] = str(certs / value) if value.endswith((".pem", ".key")) else value
    assert {"DASK_DISTRIBUTED__COMM__TLS__CA_FILE", "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY"} <= set(env)
    return env


@dataclass
class TLSCluster:
    address: str  # tls://127.0.0.1:PORT
    certs: Path  # ca.pem, sched/worker/client .pem/.key
    other: Path  # another CA (ca.pem) and a client certificate it signed
    client: Any  # a distributed.Client of the test's own, over TLS
    env: dict[str, str]  # the coordinator's environment (client_env)
    scheduler_log: Path


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """The process and everything it started (its own process group), politely, then not."""
    import psutil

    try:
        family = [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        family = [proc.pid]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
            psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in family
        ):
            time.sleep(0.05)
        else:
            break


def _dask(*args: str, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """`dask ARGS` (the CLI of this environment's Dask), in a process group of its own; its
    workers import this checkout's orthovision_cli, as an installed one would be."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    with log.open("ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "dask", *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**env, "PYTHONPATH": path},
            cwd=cwd,
            start_new_session=True,
        )


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSCluster]:
    """A TLS scheduler and two worker processes, started as docs/cluster.md#security says."""
    from distributed.security import Security

    tmp = tmp_path_factory.mktemp("tls")
    certs, other = tmp / "certs", tmp / "other"
    make_certificates(certs)
    make_certificates(other)  # another CA, with the same name: its certificates are strangers
    procs: list[subprocess.Popen[bytes]] = []
    client = None
    try:
        # The doc's commands, run where the certificates are; on loopback, on a free port.
        scheduler = _dask(
            *_command("dask scheduler --tls")[1:], "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
            "--scheduler-file", str(tmp / "scheduler.json"),
            cwd=certs, log=tmp / "scheduler.log",
        )  # fmt: skip
        procs.append(scheduler)
        deadline = time.monotonic() + START_S
        while not (tmp / "scheduler.json").exists():
            assert scheduler.poll() is None, (tmp / "scheduler.log").read_text()
            assert time.monotonic() < deadline, (tmp / "scheduler.log").read_text()
            time.sleep(0.1)
        time.sleep(0.1)  # the file is written in one go; let it be complete
        address = json.loads((tmp / "scheduler.json").read_text())["address"]
        assert address.startswith("tls://127.0.0.1:")
        worker = [address if a == f"tls://{HOST}:8786" else a for a in _command("dask worker tls:")[1:]]
        assert address in worker
        workers = _dask(
            *worker, "--nworkers", "2", "--memory-limit", "1GiB", "--no-dashboard",
            cwd=certs, log=tmp / "worker.log",
        )  # fmt: skip
        procs.append(workers)
        security = Security(
            tls_ca_file=str(certs / "ca.pem"),
            tls_client_cert=str(certs / "client.pem"),
            tls_client_key=str(certs / "client.key"),
            require_encryption=True,
        )
        client = distributed.Client(address, security=security, timeout=START_S, set_as_default=False)
        try:
            client.wait_for_workers(2, timeout=START_S)
        except TimeoutError:
            pytest.fail("the TLS workers did not register:\n" + (tmp / "worker.log").read_text()[-3000:])
        yield TLSCluster(address, certs, other, client, client_env(certs), tmp / "scheduler.log")
    finally:
        if client is not None:
            client.close(timeout=10)
        for proc in reversed(procs):
            _stop(proc)


def _loads(client: Any) -> dict[str, int]:
    """How often each worker loaded a run's context (the model pack)."""
    return dict(
        client.run(lambda: __import__("orthovision_cli.batch.cluster_worker").batch.cluster_worker.LOADS)
    )


def test_convert_over_tls_gives_the_same_instances_as_the_local_pool(
    tls_cluster: TLSCluster, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    mixed_corpus(src)
    before = _loads(tls_cluster.client)
    _, dask = assert_same_as_local_pool(src, tmp_path, tls_cluster.address, env=tls_cluster.env)
    # The TLS workers did the work: each loaded the run's context (the pack) once.
    after = _loads(tls_cluster.client)
    assert len(after) == 2 and {w: after[w] - before.get(w, 0) for w in after} == dict.fromkeys(after, 1)
    for f in outputs(dask):  # every output whole: its pixels decode
        assert pydicom.dcmread(f).pixel_array.size > 0


def test_the_certificates_from_a_dask_configuration_file(tls_cluster: TLSCluster, tmp_path: Path) -> None:
    """The doc's other way: the coordinator's TLS settings in a Dask YAML file (found here
    through DASK_CONFIG, a folder Dask reads as it reads ~/.config/dask)."""
    text = _recipe("require-encryption: true", lang="yaml")
    assert "/etc/dask/" in text
    (tmp_path / "dask").mkdir()
    (tmp_path / "dask" / "tls.yaml").write_text(text.replace("/etc/dask/", f"{tls_cluster.certs}/"))
    src, out = tmp_path / "src", tmp_path / "out"
    inputs = make_corpus(src, 4, side=64, clutter=False)
    env = {"DASK_CONFIG": str(tmp_path / "dask")}
    done = convert(
        str(src), "-o", str(out), *LABEL_ARGS, "--cluster", tls_cluster.address, env=env, timeout=90
    )
    assert done.returncode == ExitCode.OK, done.stderr
    assert_converted_once(inputs, out)


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("no TLS configuration", ExitCode.USAGE, "needs this coordinator's TLS certificates"),
        ("client certificate from another CA", ExitCode.FATAL, "scheduler refused this coordinator's certificate"),
        ("scheduler's CA not trusted", ExitCode.FATAL, "is not signed by the CA this coordinator trusts"),
        ("tcp:// address", ExitCode.FATAL, "closed the connection at once (a tls:// scheduler?"),
        ("tcp:// address, encryption required", ExitCode.USAGE, "configuration requires encryption"),
        ("local:N, encryption required", ExitCode.USAGE, "a local cluster is not encrypted"),
    ],
)  # fmt: skip
def test_a_coordinator_without_the_right_tls_gets_one_line(
    tls_cluster: TLSCluster, tmp_path: Path, case: str, code: int, message: str
) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    inputs = make_corpus(src, 4, side=64, clutter=False)
    env, address = dict(tls_cluster.env), tls_cluster.address
    tcp = address.replace("tls://", "tcp://")
    if case == "no TLS configuration":
        env = {}
    elif case == "client certificate from another CA":
        env["DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT"] = str(tls_cluster.other / "client.pem")
        env["DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY"] = str(tls_cluster.other / "client.key")
    elif case == "scheduler's CA not trusted":
        env["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"] = str(tls_cluster.other / "ca.pem")
    elif case == "tcp:// address":
        env, address = {}, tcp
    elif case == "tcp:// address, encryption required":
        address = tcp
    else:  # the variables of a TLS cluster still set for a run on this machine's own workers
        address = "local:1"
    t0 = time.monotonic()
    done = convert(str(src), "-o", str(out), *LABEL_ARGS, "--cluster", address, env=env, timeout=90)
    elapsed = time.monotonic() - t0
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert done.returncode == code, done.stderr
    assert len(errors) == 1 and message in errors[0] and address in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert elapsed < 25, elapsed  # at once, not after the 30 s connection timeout
    assert outputs(out) == [] and list(out.rglob(TMP_GLOB)) == []
    assert not (out / "orthovision-report.json").exists()
    if case == "no TLS configuration":  # nothing left that stops the same command, configured
        again = convert(str(src), "-o", str(out), *LABEL_ARGS, "--cluster", address, env=tls_cluster.env)
        assert again.returncode == ExitCode.OK, again.stderr
        assert_converted_once(inputs, out)


def test_a_worker_certificate_for_servers_only_is_refused(tls_cluster: TLSCluster, tmp_path: Path) -> None:
    """docs/cluster.md: each certificate must allow clientAuth too; a worker is a client of the
    scheduler. One signed by the cluster's CA for serverAuth alone never joins."""
    openssl, certs = require_tool("openssl"), tls_cluster.certs
    (tmp_path / "server.cnf").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    for args in (
        ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=w",
         "-keyout", "w.key", "-out", "w.csr"],
        ["x509", "-req", "-in", "w.csr", "-CA", str(certs / "ca.pem"), "-CAkey", str(certs / "ca.key"),
         "-CAcreateserial", "-CAserial", "ca.srl", "-days", "2", "-extfile", "server.cnf", "-out", "w.pem"],
    ):  # fmt: skip
        subprocess.run([openssl, *args], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    worker = _dask(
        "worker", tls_cluster.address, "--tls-ca-file", str(certs / "ca.pem"), "--tls-cert", "w.pem",
        "--tls-key", "w.key", "--nthreads", "1", "--no-nanny", "--no-dashboard",
        cwd=tmp_path, log=tmp_path / "worker.log",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "unsuitable certificate purpose" not in (log := tls_cluster.scheduler_log.read_text()):
            assert time.monotonic() < deadline, log[-3000:]
            time.sleep(0.2)
        assert worker.poll() is None  # it waits, and tries again
        assert len(tls_cluster.client.scheduler_info(n_workers=-1)["workers"]) == 2
    finally:
        _stop(worker)
