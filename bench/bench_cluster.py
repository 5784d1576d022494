"""`convert --cluster` throughput: files/s with 1 and 2 Dask workers against the local process
pool (`--jobs 1`, `--jobs 2`) on the same corpus in the same run, and the coordinator's own cost
per file (how many files/s one coordinator can drive).

    python bench/bench_cluster.py                     # 600 files, 3 repeats
    python bench/bench_cluster.py --files 2000 --update-docs

The corpus is bench_batch.py's (tests/corpus.py: distinct crops of the real images in
sample_data/, JPEG, PNG, 8-bit and zlib 16-bit TIFF, 640 px wide), generated into
bench/_corpus/ if missing, converted with `--no-models --modality OT --body-part HEAD` (no
classification: the per-file machinery and pixel work; with classification a worker's cost per
file grows and the coordinator's does not).

The Dask cluster is a real one started by hand, as docs/cluster.md describes: `dask scheduler`
and `dask worker --nworkers K --nthreads 1` processes on this machine, reached over TCP
loopback; started once per worker count and kept warm across repeats (as a cluster is). Each
timed command starts with a fresh output folder, after `sync`, inputs in the page cache; wall
clock of the whole command (start-up included), median of --repeat; also the run's own seconds
from its report. The coordinator's cost is the `convert` process's own CPU time (user + system,
without its workers', interpreter start-up included) per file, for the pool too; the
scheduler's CPU time per file likewise.
`--cluster local:2` (the LocalCluster started inside the run, start-up included) is timed too.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from batch_common import BENCH, Row, batch_corpus, check_report, convert_command, fresh, options, update_docs

OUT = BENCH / "_out_cluster"
BEGIN, END = "<!-- bench-cluster:begin -->", "<!-- bench-cluster:end -->"


@dataclass
class CpuRow(Row):
    cpu: list[float] = field(default_factory=list)  # coordinator CPU seconds
    sched_cpu: list[float] = field(default_factory=list)


def dask_exe() -> str:
    return shutil.which("dask") or str(Path(sys.executable).with_name("dask"))


# The same `orthovision convert`, run by a wrapper that writes the process's own CPU time (not
# its workers') when it exits: the coordinator's cost, pool or cluster alike.
SELF_CPU = """
import atexit, os, resource, runpy, sys
def _cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    open(os.environ["BENCH_CPU_FILE"], "w").write(str(r.ru_utime + r.ru_stime))
atexit.register(_cpu)
sys.argv = ["orthovision", *sys.argv[1:]]
runpy.run_module("orthovision_cli", run_name="__main__")
"""


def timed(cmd: list[str]) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall seconds, the coordinator process's own CPU seconds, the process."""
    cpu_file = OUT / "cpu.txt"
    cpu_file.unlink(missing_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", SELF_CPU, *cmd[1:]],
        text=True,
        capture_output=True,
        env={**os.environ, "BENCH_CPU_FILE": str(cpu_file)},
    )
    wall = time.perf_counter() - t0
    return wall, float(cpu_file.read_text()), proc


class HandCluster:
    """`dask scheduler` + `dask worker --nworkers K --nthreads 1`, as an admin starts them."""

    def __init__(self, workers: int) -> None:
        import psutil

        self.dir = Path(tempfile.mkdtemp(prefix="orthovision-bench-dask-"))
        sfile = self.dir / "scheduler.json"
        common = ["--no-dashboard"]
        self.scheduler = subprocess.Popen(
            [
                dask_exe(),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--scheduler-file",
                str(sfile),
                *common,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:  # the file appears before its content
            try:
                self.address = json.loads(sfile.read_text())["address"]
                break
            except (OSError, ValueError, KeyError):
                if time.monotonic() > deadline:
                    self.scheduler.kill()
                    raise SystemExit("dask scheduler did not start") from None
                time.sleep(0.1)
        self.worker_cmd = [
            dask_exe(),
            "worker",
            self.address,
            "--nworkers",
            str(workers),
            "--nthreads",
            "1",
            "--host",
            "127.0.0.1",
            *common,
        ]
        self.workers = subprocess.Popen(self.worker_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.proc = psutil.Process(self.scheduler.pid)
        from distributed import Client

        with Client(self.address, timeout=60) as c:
            c.wait_for_workers(workers, timeout=120)

    def scheduler_cpu(self) -> float:
        t = self.proc.cpu_times()
        return t.user + t.system

    def close(self) -> None:
        for p in (self.workers, self.scheduler):
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def main() -> None:
    args = options(__doc__)
    src, inputs, mb = batch_corpus(args.files, args.side)
    n = len(inputs)
    load = os.getloadavg()[0]

    rows: dict[str, CpuRow] = {}
    for jobs in (1, 2):
        rows[f"pool{jobs}"] = CpuRow(
            f"local pool `--jobs {jobs}` (peer)" + (" (work in the main process)" if jobs == 1 else ""),
            shlex.join(convert_command(src, OUT / f"pool{jobs}", "--jobs", str(jobs))),
            n,
        )
    for k in (1, 2):
        rows[f"dask{k}"] = CpuRow(
            f"Dask, {k} worker{'s' if k > 1 else ''} (`dask worker --nworkers {k} --nthreads 1`)",
            shlex.join(convert_command(src, OUT / f"dask{k}", "--cluster", "tcp://SCHEDULER:PORT")),
            n,
        )
    rows["local2"] = CpuRow(
        "`--cluster local:2` (LocalCluster started by the run)",
        shlex.join(convert_command(src, OUT / "local2", "--cluster", "local:2")),
        n,
    )

    def run(key: str, dest: Path, *how: str, cluster: HandCluster | None = None) -> None:
        row = rows[key]
        fresh(dest)
        s0 = cluster.scheduler_cpu() if cluster else 0.0
        wall, cpu, proc = timed(convert_command(src, dest, *how))
        row.inner.append(check_report(dest, proc, "converted", n))
        row.times.append(wall)
        row.cpu.append(cpu)
        if cluster:
            row.sched_cpu.append(cluster.scheduler_cpu() - s0)

    OUT.mkdir(parents=True, exist_ok=True)
    for i in range(args.repeat):
        print(f"repeat {i + 1}/{args.repeat}: local pool", file=sys.stderr)
        for jobs in (1, 2):
            run(f"pool{jobs}", OUT / f"pool{jobs}", "--jobs", str(jobs))
        print(f"repeat {i + 1}/{args.repeat}: local:2", file=sys.stderr)
        run("local2", OUT / "local2", "--cluster", "local:2")
    for k in (1, 2):
        hc = HandCluster(k)
        try:
            for i in range(args.repeat):
                print(f"repeat {i + 1}/{args.repeat}: dask {k}", file=sys.stderr)
                run(f"dask{k}", OUT / f"dask{k}", "--cluster", hc.address, cluster=hc)
        finally:
            hc.close()

    d1, d2 = rows["dask1"], rows["dask2"]
    coord = statistics.median([c / n for c in d1.cpu + d2.cpu])
    pool_coord = statistics.median([c / n for c in rows["pool2"].cpu])
    sched = statistics.median([c / n for c in d1.sched_cpu + d2.sched_cpu])
    lines = [
        f"{n} files ({mb:.0f} MB: JPEG, PNG, 8-bit TIFF, zlib 16-bit TIFF, {args.side} px wide, 10 a folder), "
        f"{os.cpu_count()} CPUs shared by coordinator, scheduler and workers, {platform.system()} "
        f"{platform.machine()}, Python {platform.python_version()}, load average {load:.1f} before the run; "
        f"wall clock with start-up, median of {args.repeat}, fsync on.",
        "",
        "| run | seconds | files/s | run's own seconds | coordinator CPU per file | scheduler CPU per file |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows.values():
        cpu = f"{statistics.median(row.cpu) / n * 1000:.1f} ms"
        sc = f"{statistics.median(row.sched_cpu) / n * 1000:.1f} ms" if row.sched_cpu else ""
        lines.append(
            f"| {row.name} | {row.seconds:.2f} | {n / row.seconds:.0f} | "
            f"{statistics.median(row.inner):.2f} | {cpu} | {sc} |"
        )
    lines += [
        "",
        f"Dask with 2 workers: {rows['pool2'].seconds / d2.seconds:.2f}x the local pool `--jobs 2`; "
        f"2 workers {d1.seconds / d2.seconds:.2f}x 1 worker. One coordinator spends {coord * 1000:.1f} ms "
        f"of CPU per file (walk, state, plan, commit, report, Dask client; the local pool's main process "
        f"{pool_coord * 1000:.1f} ms): about {1 / coord:.0f} files/s per coordinator core before it becomes the limit; the scheduler {sched * 1000:.1f} ms per file "
        f"(two stages, in tasks of several inputs), about {1 / sched:.0f} files/s.",
        "",
        f"Commands (`python bench/bench_cluster.py --files {args.files} --side {args.side} --repeat {args.repeat}`):",
        "",
        "```sh",
        "dask scheduler --host 127.0.0.1 --port 0 --scheduler-file S --no-dashboard",
        "dask worker tcp://SCHEDULER:PORT --nworkers K --nthreads 1 --host 127.0.0.1 --no-dashboard   # K = 1, 2",
        *(row.command for row in rows.values()),
        "```",
    ]
    table = "\n".join(lines)
    print(table)
    (OUT / "results.md").write_text(table + "\n")
    if args.update_docs:
        update_docs(table, BEGIN, END, "Cluster runs", "bench/bench_cluster.py")


if __name__ == "__main__":
    main()
