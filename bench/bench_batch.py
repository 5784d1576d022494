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

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests"))

from corpus import LABEL_ARGS, make_corpus  # noqa: E402

OUT = BENCH / "_out_batch"
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench-batch:begin -->", "<!-- bench-batch:end -->"
RERUN_TARGET = 0.05


@dataclass
class Row:
    name: str
    command: str
    files: int
    times: list[float] = field(default_factory=list)
    inner: list[float] = field(default_factory=list)  # the run's own "seconds" (no start-up)

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds


def sh(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, capture_output=True)


def fresh(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    sh(["sync"])


def warm(paths: list[Path]) -> None:
    for p in paths:
        p.read_bytes()


def orthovision(src: Path, dest: Path, jobs: int) -> list[str]:
    exe = shutil.which("orthovision") or str(Path(sys.executable).with_name("orthovision"))
    return [exe, "convert", str(src), "-o", str(dest), *LABEL_ARGS, "--jobs", str(jobs), "--quiet"]


def timed(cmd: list[str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    proc = sh(cmd)
    return time.perf_counter() - t0, proc


def check_report(dest: Path, proc: subprocess.CompletedProcess[str], status: str, n: int) -> float:
    report = json.loads((dest / "orthovision-report.json").read_text())
    if proc.returncode != 0 or report["counts"] != {status: n}:
        raise SystemExit(f"run failed (exit {proc.returncode}, {report['counts']}): {proc.stderr}")
    return float(report["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=600)
    ap.add_argument("--side", type=int, default=640, help="image width in pixels")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--update-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = ap.parse_args()

    src = BENCH / "_corpus" / f"batch-{args.files}-{args.side}"
    done = src.with_name(src.name + ".complete")  # outside the corpus: not an input
    if not done.exists():
        print(f"generating {args.files} inputs in {src} ...", file=sys.stderr)
        if src.exists():
            shutil.rmtree(src)
        make_corpus(src, args.files, args.side)
        done.write_text("")
    inputs = sorted(p for p in src.rglob("img*") if p.is_file())
    n = len(inputs)
    mb = sum(p.stat().st_size for p in inputs) / 1e6
    warm(inputs)

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
        update_docs(table)


def update_docs(table: str) -> None:
    block = f"{BEGIN}\n{table}\n{END}"
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n## Batch runs\n\n`bench/bench_batch.py`.\n\n" + block + "\n"
    DOCS.write_text(text)


if __name__ == "__main__":
    main()
