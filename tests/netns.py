"""Worker hosts simulated with Linux network namespaces on this machine (issue 25): each host is
a namespace with its own address on a bridge in the root namespace, reached only over its veth;
all of them see the same file system (namespaces share it), as cluster nodes share storage.

A real `dask scheduler` listens on the bridge's address in the root namespace; each host runs
`dask worker` processes started with `ip netns exec`, announcing the host's address. Losing a
host is real too: every process in its namespace is killed with SIGKILL (`ip netns pids`),
optionally after its link is cut so that not even a TCP reset reaches the scheduler.

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), iproute2 and Dask; `NetnsHosts.why_not()` says
why not where it cannot run (most containers refuse `ip netns add`). Everything is named after
this process id, so parallel runs do not collide, and removed by `close()` (also on failure);
what a run killed outright left behind (its process gone) is removed by the next one.
Used by tests/test_cluster_netns.py and bench/cluster_netns.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IP = shutil.which("ip") or "/usr/sbin/ip"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IP, *args], capture_output=True, text=True, check=check, timeout=30)


def dask_exe() -> str:
    return shutil.which("dask") or str(Path(sys.executable).with_name("dask"))


def _free_subnet() -> str:
    """A 10.213.X.0/24 that no route on this machine uses yet, chosen from the process id."""
    used = _ip("-4", "route", "show").stdout
    for k in range(250):
        x = (os.getpid() + k) % 250 + 1
        if f"10.213.{x}." not in used:
            return f"10.213.{x}"
    raise RuntimeError("no free 10.213.X.0/24 subnet")


class NetnsHosts:
    """A bridge, `hosts` network namespaces on it and a Dask scheduler on the bridge's address."""

    def __init__(
        self, hosts: int = 2, workers_per_host: int = 1, scheduler_env: dict[str, str] | None = None
    ):
        self.sweep_stale()
        self.tag = tag = f"ov{os.getpid()}"  # at most 11 characters with a suffix (of 15)
        self.bridge = f"{tag}br"
        self.names = [f"{tag}h{i}" for i in range(hosts)]
        self.workers_per_host = workers_per_host
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.dir = Path(tempfile.mkdtemp(prefix=f"orthovision-netns-{os.getpid()}-"))
        self._made: list[tuple[str, str]] = []  # ("netns" | "link", name), to remove
        try:
            net = _free_subnet()
            self.scheduler_ip = f"{net}.1"
            self.ips = {name: f"{net}.{10 + i}" for i, name in enumerate(self.names)}
            _ip("link", "add", self.bridge, "type", "bridge")
            self._made.append(("link", self.bridge))
            _ip("addr", "add", f"{self.scheduler_ip}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, name in enumerate(self.names):
                _ip("netns", "add", name)
                self._made.append(("netns", name))
                outer, inner = f"{tag}v{i}", f"{tag}e{i}"
                _ip("link", "add", outer, "type", "veth", "peer", "name", inner, "netns", name)
                self._made.append(("link", outer))
                _ip("link", "set", outer, "master", self.bridge, "up")
                _ip("-n", name, "addr", "add", f"{self.ips[name]}/24", "dev", inner)
                _ip("-n", name, "link", "set", inner, "up")
                _ip("-n", name, "link", "set", "lo", "up")
            self.address = self._start_scheduler(scheduler_env or {})
            for name in self.names:
                self.start_host(name)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def sweep_stale() -> None:
        """Namespaces (with the workers in them) and links of an earlier run whose process is gone."""
        for name in _ip("netns", "list", check=False).stdout.split():
            m = re.fullmatch(r"ov(\d+)h\d+", name)
            if m and not Path(f"/proc/{m.group(1)}").exists():
                for pid in _ip("netns", "pids", name, check=False).stdout.split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                _ip("netns", "del", name, check=False)
        for m in re.finditer(r"^\d+: (ov(\d+)(?:br|v\d+))[@:]", _ip("-o", "link", "show").stdout, re.M):
            if not Path(f"/proc/{m.group(2)}").exists():
                _ip("link", "del", m.group(1), check=False)
        # Its scheduler, known by its scheduler file in a folder named after the dead run.
        for proc in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError):
                found = re.search(rb"orthovision-netns-(\d+)-", (proc / "cmdline").read_bytes())
                if found and not Path(f"/proc/{int(found.group(1))}").exists():
                    os.kill(int(proc.name), signal.SIGKILL)
        for folder in Path(tempfile.gettempdir()).glob("orthovision-netns-*-*"):
            m = re.match(r"orthovision-netns-(\d+)-", folder.name)
            if m and not Path(f"/proc/{m.group(1)}").exists():
                shutil.rmtree(folder, ignore_errors=True)

    @staticmethod
    def why_not() -> str | None:
        """None where namespaces, veths and a bridge can be made here; else the reason."""
        if os.geteuid() != 0:
            return "needs root to create network namespaces"
        if not Path(IP).exists():
            return "iproute2 (`ip`) is not installed"
        tag = f"ovp{os.getpid()}"
        name, veth, bridge = f"{tag}n", f"{tag}v", f"{tag}b"
        try:  # what the set-up does: a namespace, a veth into it, a bridge
            for step in (
                ("netns", "add", name),
                ("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", name),
                ("link", "add", bridge, "type", "bridge"),
                ("netns", "exec", name, sys.executable, "-c", "pass"),
            ):
                done = _ip(*step, check=False)
                if done.returncode != 0:
                    return f"`ip {' '.join(step[:2])}` is not permitted here: {done.stderr.strip()}"
        finally:
            _ip("link", "del", bridge, check=False)
            _ip("link", "del", veth, check=False)
            _ip("netns", "del", name, check=False)
        return None

    def _start_scheduler(self, env: dict[str, str]) -> str:
        sfile = self.dir / "scheduler.json"
        with (self.dir / "scheduler.log").open("ab") as log:
            self.scheduler = subprocess.Popen(
                [
                    dask_exe(),
                    "scheduler",
                    "--host",
                    self.scheduler_ip,
                    "--port",
                    "0",
                    "--scheduler-file",
                    str(sfile),
                    "--no-dashboard",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
            )
        deadline = time.monotonic() + 60
        while True:  # the file appears before its content
            try:
                return str(json.loads(sfile.read_text())["address"])
            except (OSError, ValueError, KeyError):
                if time.monotonic() > deadline or self.scheduler.poll() is not None:
                    raise RuntimeError("dask scheduler did not start: " + self.log("scheduler")) from None
                time.sleep(0.1)

    def worker_command(self, name: str) -> list[str]:
        """`dask worker` in the host's namespace, announcing its address."""
        return [
            IP,
            "netns",
            "exec",
            name,
            dask_exe(),
            "worker",
            self.address,
            "--nworkers",
            str(self.workers_per_host),
            "--nthreads",
            "1",
            "--host",
            self.ips[name],
            "--no-dashboard",
        ]

    def start_host(self, name: str) -> None:
        with (self.dir / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                self.worker_command(name), stdout=log, stderr=subprocess.STDOUT
            )

    def host_of(self, worker: str) -> str:
        """The host of a worker address (tcp://IP:PORT), or "?"."""
        ip = worker.rsplit("//", 1)[-1].rsplit(":", 1)[0]
        return next((name for name, a in self.ips.items() if a == ip), "?")

    def log(self, name: str) -> str:
        p = self.dir / f"{name}.log"
        return p.read_text(errors="replace")[-2000:] if p.exists() else ""

    def wait_for_workers(self, n: int, timeout: float = 120) -> None:
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as c:
            c.wait_for_workers(n, timeout=timeout)

    def pids(self, name: str) -> list[int]:
        out = _ip("netns", "pids", name, check=False).stdout
        return [int(p) for p in out.split()]

    def lose_host(self, name: str, cut: bool = False) -> int:
        """The host is gone: with `cut`, its link goes down first (no packet, not even a TCP
        reset, reaches the others: the scheduler finds out only by the worker's missing
        heartbeats); then every process in its namespace is killed. Returns how many."""
        if cut:
            i = self.names.index(name)
            _ip("link", "set", f"{self.tag}v{i}", "down")
        pids = self.pids(name)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc = self.procs.get(name)
        if proc is not None:
            proc.wait(30)
        return len(pids)

    def close(self) -> None:
        """Kill every process started, remove the namespaces, links and the bridge."""
        for kind, name in self._made:
            if kind == "netns":
                for pid in self.pids(name):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        for proc in [*self.procs.values(), self.scheduler]:
            if proc is not None and proc.poll() is None:
                proc.kill()
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(30)
        for kind, name in reversed(self._made):
            if kind == "netns":
                _ip("netns", "del", name, check=False)
            else:
                _ip("link", "del", name, check=False)
        self._made.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> NetnsHosts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
