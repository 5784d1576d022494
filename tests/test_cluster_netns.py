"""`convert --cluster` across two worker hosts, each in its own network namespace with its own
address (tests/netns.py), one of them lost mid-run: every input converted exactly once, and a
re-run converts nothing (issue 25). Skipped, with the reason, where namespaces cannot be made
(not root, or a container without CAP_SYS_ADMIN); the namespaces are removed in any case.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clusters import convert
from corpus import LABEL_ARGS, assert_converted_once, make_corpus, outputs
from netns import NetnsHosts

from orthovision_cli.errors import ExitCode

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::ResourceWarning")]

N = 40


# A host cut off is found when the scheduler's TCP keep-alive gives up: Dask's default 30 s,
# here 12 s (the least Dask accepts is 11 s) to keep the test short.
SCHEDULER_ENV = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP": "12s"}


@pytest.fixture
def hosts() -> Iterator[NetnsHosts]:
    why = NetnsHosts.why_not()
    if why:
        pytest.skip(f"cannot simulate worker hosts with network namespaces: {why}")
    with NetnsHosts(2, workers_per_host=1, scheduler_env=SCHEDULER_ENV) as h:
        h.wait_for_workers(2, timeout=120)
        yield h
    assert not set(h.names) & set(_netns_list())


def _hosts_seen(hosts: NetnsHosts, client: Any) -> set[str]:
    """The hosts of the workers the scheduler has now."""
    return {hosts.host_of(w) for w in client.scheduler_info(n_workers=-1)["workers"]}


def _netns_list() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in listed.splitlines() if line.strip()]


@pytest.mark.parametrize("cut", [False, True], ids=["killed", "cut-off"])
def test_a_worker_host_lost_mid_run_loses_nothing(hosts: NetnsHosts, tmp_path: Path, cut: bool) -> None:
    """Killed: every process of the host gets SIGKILL (its connections close). Cut off: its link
    goes down first, so no packet comes back, as when a node loses power or its network."""
    src, out = tmp_path / "src", tmp_path / "out"
    inputs = make_corpus(src, N, side=640, clutter=False)
    victim = hosts.names[-1]
    log = tmp_path / "log"
    with log.open("wb") as f:
        # Tasks of 2 inputs: many, so that the victim holds some when a few files are written.
        proc = subprocess.Popen(
            [*convert_argv(src, out), "--cluster", hosts.address],
            stdout=f,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ORTHOVISION_CLUSTER_BATCH": "2"},
        )
    try:
        lost = False
        t0 = time.monotonic()
        with distributed.Client(hosts.address, timeout=30, set_as_default=False) as client:
            # Each host's worker reached the scheduler from its own address, over its veth.
            assert _hosts_seen(hosts, client) == set(hosts.names)
            while not lost and proc.poll() is None and time.monotonic() - t0 < 180:
                busy = {hosts.host_of(w) for w, keys in client.processing().items() if keys}
                if victim in busy and len(outputs(out)) >= 4:
                    assert hosts.lose_host(victim, cut=cut) >= 2  # its nanny and its worker, at least
                    lost = True
                time.sleep(0.01)
            assert lost, f"{victim} was never busy while the run was writing: {log.read_text()[-2000:]}"
            assert proc.wait(240) == ExitCode.OK, log.read_text()
            # The scheduler saw the host go: only the other host's worker is left.
            assert _hosts_seen(hosts, client) == {hosts.names[0]}
    finally:  # a failed check leaves no coordinator behind
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert_converted_once(inputs, out)  # every input once, no temp file, unique UIDs
    report = json.loads((out / "orthovision-report.json").read_text())
    assert report["counts"] == {"converted": N}

    again = convert(str(src), "-o", str(out), *LABEL_ARGS, "--cluster", hosts.address, "--json")
    assert again.returncode == ExitCode.OK, again.stderr
    assert json.loads(again.stdout)["counts"] == {"unchanged": N}


def convert_argv(src: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "orthovision_cli",
        "convert",
        str(src),
        "-o",
        str(out),
        *LABEL_ARGS,
        "--quiet",
    ]


def test_namespaces_are_removed_when_set_up_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """A scheduler that cannot start: the namespaces and the bridge made so far are gone."""
    why = NetnsHosts.why_not()
    if why:
        pytest.skip(f"cannot simulate worker hosts with network namespaces: {why}")
    import netns

    monkeypatch.setattr(netns, "dask_exe", lambda: "/nonexistent/dask")
    with pytest.raises(OSError):
        NetnsHosts(2)
    left = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    tag = f"ov{os.getpid()}"
    assert tag + "br" not in left
    assert not [n for n in _netns_list() if n.startswith(tag)]
