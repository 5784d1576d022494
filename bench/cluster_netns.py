"""`convert --cluster` across two worker hosts simulated with network namespaces, one of them
lost mid-run (issue 25). Root only; needs iproute2 and Dask (`pip install -e '.[cluster]'`).

    sudo .venv/bin/python bench/cluster_netns.py                   # 300 files, both ways of losing a host
    python bench/cluster_netns.py --files 300 --loss kill --json bench/_out_netns/results.json

Set-up (tests/netns.py): a bridge in the root namespace with the scheduler's address, one
network namespace per worker host, each with its own address on a veth into the bridge; a
`dask scheduler` on the bridge's address; `ip netns exec HOST dask worker tcp://SCHED:PORT
--nworkers K --nthreads 1 --host HOST_IP` in each. The coordinator (`orthovision convert
--cluster tcp://SCHED:PORT`) runs in the root namespace. Inputs and outputs are on the one file
system all namespaces share (as cluster nodes share NFS). The corpus is bench_batch.py's (real
crops of sample_data/, JPEG, PNG, 8- and 16-bit TIFF), `--no-models --modality OT --body-part HEAD`.

Runs, in order: the local pool `--jobs 2` (the peer), the two hosts with no loss (which host ran
how many tasks: the scheduler's task stream), then for each `--loss`: a fresh cluster, a run
during which the second host is lost once a third of the files are written and its workers
hold tasks, and a re-run on the host that is left. `kill`: every process in its namespace gets
SIGKILL (the kernel closes their connections, the scheduler knows at once). `cut`: its link goes
down first, then the processes are killed: no packet comes back, as when a node loses power or
its network; the scheduler finds out when its connection to the worker times out (Dask's
`distributed.comm.timeouts.tcp`, 30 s by default; `--scheduler-env
DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP=10s` changes it).
Each run is checked: exit 0, every input converted exactly once (outputs named after the inputs,
one each, unique SOP Instance UIDs, no temporary file left), the re-run converts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pydicom
from batch_common import BENCH, batch_corpus, convert_command, fresh
from netns import NetnsHosts  # tests/netns.py (batch_common puts tests/ on the path)

OUT = BENCH / "_out_netns"


def counts(dest: Path) -> dict[str, int]:
    return dict(json.loads((dest / "orthovision-report.json").read_text())["counts"])


def exactly_once(inputs: list[Path], dest: Path) -> None:
    """Every input has one output, named after it; SOP Instance UIDs unique; no temp file."""
    outs = [p for p in dest.rglob("*.dcm") if not p.name.startswith(".orthovision-tmp-")]
    stems = sorted(p.stem for p in outs)
    if stems != sorted(p.stem for p in inputs):
        raise SystemExit(f"{dest}: {len(outs)} outputs for {len(inputs)} inputs")
    uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in outs}
    if len(uids) != len(inputs):
        raise SystemExit(f"{dest}: {len(uids)} distinct SOP Instance UIDs for {len(inputs)} outputs")
    left = list(dest.rglob(".orthovision-tmp-*"))
    if left:
        raise SystemExit(f"{dest}: temporary files left: {left[:3]}")


def tasks_per_host(hosts: NetnsHosts, since: float) -> dict[str, int]:
    """Tasks finished since `since` on each host (the scheduler's task stream)."""
    from distributed import Client

    with Client(hosts.address, timeout=30, set_as_default=False) as c:
        stream = c.get_task_stream(start=since)
    per: dict[str, int] = {}
    for t in stream:
        host = hosts.host_of(t.get("worker", ""))
        per[host] = per.get(host, 0) + 1
    return per


def timed(cmd: list[str], log: Path, timeout: float) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    log.write_text(proc.stderr)
    return time.perf_counter() - t0, proc


def run_with_loss(
    hosts: NetnsHosts, src: Path, inputs: list[Path], dest: Path, cut: bool, timeout: float
) -> dict[str, Any]:
    """Convert on the cluster; lose the second host once a third is written and its workers
    hold tasks; the run must finish with every input once; then a re-run converts nothing."""
    from distributed import Client

    fresh(dest)
    victim = hosts.names[-1]
    cmd = convert_command(src, dest, "--cluster", hosts.address)
    n = len(inputs)
    with Client(hosts.address, timeout=30, set_as_default=False) as c:
        c.get_task_stream(start=time.time())  # installs the scheduler's task-stream plugin
    since = time.time()
    t0 = time.perf_counter()
    log = (OUT / f"loss-{'cut' if cut else 'kill'}.log").open("w")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    lost_at = None
    killed = 0
    with Client(hosts.address, timeout=30, set_as_default=False) as c:
        while proc.poll() is None and lost_at is None and time.perf_counter() - t0 < timeout:
            written = sum(1 for _ in dest.rglob("*.dcm")) if dest.exists() else 0
            if written >= n // 3:
                busy = [w for w, keys in c.processing().items() if keys and hosts.host_of(w) == victim]
                if busy:
                    killed = hosts.lose_host(victim, cut=cut)
                    lost_at = (time.perf_counter() - t0, written)
            time.sleep(0.02)
    try:
        rc = proc.wait(max(1.0, timeout - (time.perf_counter() - t0)))
    except subprocess.TimeoutExpired:
        proc.kill()
        raise SystemExit(f"the run did not finish within {timeout:.0f} s after losing {victim}") from None
    wall = time.perf_counter() - t0
    log.close()
    if lost_at is None:
        raise SystemExit(f"{victim} was never busy after a third of the files (exit {rc}): run more files")
    if rc != 0 or counts(dest) != {"converted": n}:
        raise SystemExit(f"run with {victim} lost: exit {rc}, {counts(dest)}; see {log.name}")
    exactly_once(inputs, dest)
    first = counts(dest)
    tasks = tasks_per_host(hosts, since)  # the lost host's: those it finished before
    again_s, again = timed(cmd, OUT / "rerun.log", timeout)
    if again.returncode != 0 or counts(dest) != {"unchanged": n}:
        raise SystemExit(f"re-run: exit {again.returncode}, {counts(dest)}")
    return {
        "loss": "cut" if cut else "kill",
        "seconds": round(wall, 2),
        "files_per_s": round(n / wall, 1),
        "lost_after_s": round(lost_at[0], 2),
        "written_when_lost": lost_at[1],
        "processes_killed": killed,
        "tasks_per_host": tasks,
        "exit": rc,
        "counts": first,
        "rerun_seconds": round(again_s, 2),
        "rerun_counts": counts(dest),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=300)
    ap.add_argument("--side", type=int, default=512, help="image width in pixels")
    ap.add_argument("--workers-per-host", type=int, default=1)
    ap.add_argument("--loss", choices=["kill", "cut", "both"], default="both")
    ap.add_argument(
        "--scheduler-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment of the scheduler (Dask settings, e.g. DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP=10s)",
    )
    ap.add_argument("--timeout", type=float, default=600, help="seconds a run may take")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    # SIGTERM (timeout(1), a CI cancel) unwinds as Ctrl-C does: the clean-up in `finally` runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    why = NetnsHosts.why_not()
    if why:
        raise SystemExit(f"cannot simulate hosts here: {why}")
    OUT.mkdir(parents=True, exist_ok=True)
    src, inputs, mb = batch_corpus(args.files, args.side)
    n = len(inputs)
    res: dict[str, Any] = {"files": n, "mb": round(mb, 1), "load_before": os.getloadavg()[0], "commands": {}}

    dest = OUT / "pool"
    fresh(dest)
    cmd = convert_command(src, dest, "--jobs", "2")
    res["commands"]["pool"] = shlex.join(cmd)
    wall, proc = timed(cmd, OUT / "pool.log", args.timeout)
    if proc.returncode != 0 or counts(dest) != {"converted": n}:
        raise SystemExit(f"local pool: exit {proc.returncode}: {proc.stderr[-500:]}")
    res["pool_jobs2"] = {"seconds": round(wall, 2), "files_per_s": round(n / wall, 1)}
    print(f"local pool --jobs 2: {wall:.2f} s", file=sys.stderr)

    with NetnsHosts(2, args.workers_per_host) as hosts:
        hosts.wait_for_workers(2 * args.workers_per_host)
        res["hosts"] = dict(hosts.ips)
        res["scheduler"] = hosts.address
        res["commands"]["workers"] = shlex.join(hosts.worker_command(hosts.names[0]))
        res["commands"]["cluster"] = shlex.join(
            convert_command(src, OUT / "cluster", "--cluster", hosts.address)
        )
        from distributed import Client

        with Client(hosts.address, timeout=30, set_as_default=False) as c:
            c.get_task_stream(start=time.time())  # installs the scheduler's task-stream plugin
        since = time.time()
        dest = OUT / "cluster"
        fresh(dest)
        wall, proc = timed(
            convert_command(src, dest, "--cluster", hosts.address), OUT / "cluster.log", args.timeout
        )
        if proc.returncode != 0 or counts(dest) != {"converted": n}:
            raise SystemExit(f"cluster: exit {proc.returncode}: {proc.stderr[-500:]}")
        exactly_once(inputs, dest)
        res["cluster_2_hosts"] = {
            "seconds": round(wall, 2),
            "files_per_s": round(n / wall, 1),
            "tasks_per_host": tasks_per_host(hosts, since),
        }
        print(f"2 hosts: {wall:.2f} s, {res['cluster_2_hosts']['tasks_per_host']}", file=sys.stderr)

    res["losses"] = []
    for mode in ("kill", "cut") if args.loss == "both" else (args.loss,):
        env = dict(kv.split("=", 1) for kv in args.scheduler_env)
        with NetnsHosts(2, args.workers_per_host, scheduler_env=env) as hosts:
            hosts.wait_for_workers(2 * args.workers_per_host)
            r = run_with_loss(hosts, src, inputs, OUT / f"loss-{mode}", mode == "cut", args.timeout)
        r["scheduler_env"] = env
        res["losses"].append(r)
        print(f"host lost ({mode}): {r}", file=sys.stderr)

    print(json.dumps(res, indent=1))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    for dest in (OUT / "pool", OUT / "cluster", OUT / "loss-kill", OUT / "loss-cut"):
        shutil.rmtree(dest, ignore_errors=True)  # the outputs; the logs and the JSON stay


if __name__ == "__main__":
    main()
