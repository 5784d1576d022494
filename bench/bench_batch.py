"""Batch throughput: files/s with `--jobs 1` and `--jobs 2`, and the cost of a re-run over a
finished job, against `cp -r` of the same corpus in the same run.

    python bench/bench_batch.py                  # 600 files, 3 repeats
    python bench/bench_batch.py --files 2000 --repeat 5 --update-docs

The corpus (tests/corpus.py: distinct crops of the real images in sample_data/, a quarter each
JPEG, PNG, 8-bit TIFF and zlib 16-bit TIFF, 640 pixels wide, ten files a folder) is generated
into bench/_corpus/batch-<files>-<side>/ if missing. Every timed command starts with a fresh,
empty output folder under bench/_out_batch/, after `sync`, with the inputs in the page cache;
wall-clock time of the whole command (interpreter start-up included), median of --repeat.

The re-run is the same `--jobs 2` command again over its own finished output: it must find
everything unchanged and convert nothing. Target: under 5 % of the first run's time.
"""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from batch_common import BENCH, Row, batch_corpus, check_report, convert_command, fresh, options, update_docs

OUT = BENCH / "_out_batch"
BEGIN, END = "<!-- bench-batch:begin -->", "<!-- bench-batch:end -->"
RERUN_TARGET = 0.05


def orthovision(src: Path, dest: Path, jobs: int) -> list[str]:
    return convert_command(src, dest, "--jobs", str(jobs))


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, text=True, capture_output=True)
    return time.perf_counter() - t0, proc


def main() -> None:
    args = options(__doc__)
    src, inputs, mb = batch_corpus(args.files, args.side)
    n = len(inputs)

    cp = Row("`cp -r` (peer)", f"cp -r {src} {OUT}/cp", n)
    rows = {
        jobs: Row(f"orthovision `--jobs {jobs}`", shlex.join(orthovision(src, OUT / f"j{jobs}", jobs)), n)
        for jobs in (1, 2)
    }
    rerun = Row("re-run over the finished `--jobs 2` job", rows[2].command, n)
    for i in range(args.repeat):
        print(f"repeat {i + 1}/{args.repeat}", file=sys.stderr)
        fresh(OUT / "cp")
        OUT.mkdir(parents=True, exist_ok=True)
        t, proc = timed(["cp", "-r", str(src), str(OUT / "cp")])
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        cp.times.append(t)
        for jobs, row in rows.items():
            dest = OUT / f"j{jobs}"
            fresh(dest)
            t, proc = timed(orthovision(src, dest, jobs))
            row.inner.append(check_report(dest, proc, "converted", n))
            row.times.append(t)
        t, proc = timed(orthovision(src, OUT / "j2", 2))
        rerun.inner.append(check_report(OUT / "j2", proc, "unchanged", n))
        rerun.times.append(t)

    ratio = rerun.seconds / rows[2].seconds
    inner_ratio = statistics.median(rerun.inner) / statistics.median(rows[2].inner)
    lines = [
        f"{n} files ({mb:.0f} MB: JPEG, PNG, 8-bit TIFF, zlib 16-bit TIFF, {args.side} px wide, "
        f"10 a folder), {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}; wall clock with start-up, median of {args.repeat}, "
        "fsync on.",
        "",
        "| run | seconds | files/s | run's own seconds | vs `cp -r` |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in (cp, rows[1], rows[2], rerun):
        inner = f"{statistics.median(row.inner):.2f}" if row.inner else ""
        lines.append(
            f"| {row.name} | {row.seconds:.2f} | {row.files_per_s:.0f} | {inner} | "
            f"{row.seconds / cp.seconds:.1f}x |"
        )
    lines += [
        "",
        f"Re-run over a finished job: {ratio:.1%} of the first run's wall clock "
        f"({'meets' if ratio < RERUN_TARGET else 'misses'} the {RERUN_TARGET:.0%} target), "
        f"{inner_ratio:.1%} of its own time without interpreter start-up; "
        f"`--jobs 2` is {rows[1].seconds / rows[2].seconds:.2f}x `--jobs 1`.",
        "",
        "Commands (`python bench/bench_batch.py "
        f"--files {args.files} --side {args.side} --repeat {args.repeat}`):",
        "",
        "```sh",
        cp.command,
        rows[1].command,
        rows[2].command + "   # then again: the re-run",
        "```",
    ]
    table = "\n".join(lines)
    print(table)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.md").write_text(table + "\n")
    if args.update_docs:
        update_docs(table, BEGIN, END, "Batch runs", "bench/bench_batch.py")


if __name__ == "__main__":
    main()
