"""Conversion throughput: `orthovision convert` against DCMTK `img2dcm` and `cp -r`, same run.

    python bench/bench_convert.py                     # 200 JPEGs + 50 TIFFs, 3 repeats
    python bench/bench_convert.py --repeat 5 --update-docs
    python bench/bench_convert.py --kinds jpeg --jpegs 400

The corpus is generated first if it is missing (bench/corpus.py, under bench/_corpus/). Every
timed command is run in a fresh, empty output folder under bench/_out_convert/, after `sync`
(so no earlier run's dirty pages are written back during this one), with every input already in
the page cache (read once before the first run, and the corpus is far smaller than memory).
Wall-clock time of the whole command is measured, interpreter start-up included: that is what a
user waits for. Each configuration runs `--repeat` times; the median is reported.

Peers:
* JPEG: `img2dcm -vlp` (VL Photographic, JPEG pass-through, DCMTK's default JPEG options), one
  process per file in a plain shell loop, as users script it; also the same with
  `xargs -P <cores>` (both cores busy, as orthovision's --jobs 2); `cp -r` of the input folder.
* TIFF: img2dcm cannot read TIFF (its input formats are JPEG and BMP), so TIFF is compared with
  `cp -r` only.

At most `--cpus` CPUs are used (the bench pins itself and its children with sched_setaffinity).
Results: a markdown table on stdout and in bench/_out_convert/results.md, raw figures in
results.json; `--update-docs` puts the table into the "Conversion" section of
docs/benchmarks.md (between its bench-convert markers, nothing else touched).
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import corpus  # noqa: E402

OUT = BENCH / "_out_convert"
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench-convert:begin -->", "<!-- bench-convert:end -->"
# Labels as a user gives them: photographs are XC (VL Photographic); the film scans are
# cephalometric radiographs on film, DX (Secondary Capture, Conversion Type DF).
LABELS = {
    "jpeg": ["--no-models", "--modality", "XC", "--body-part", "HEAD"],
    "tiff": ["--no-models", "--modality", "DX", "--body-part", "HEAD"],
}
TARGET = {"jpeg": ("files/s", 100.0), "tiff": ("MB/s", 250.0)}


@dataclass
class Result:
    kind: str
    name: str
    command: str
    files: int
    mbytes: float
    dest: str = ""
    times: list[float] = field(default_factory=list)
    inner: list[float] = field(default_factory=list)  # orthovision's own "seconds" (no start-up)
    peer: bool = True

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.mbytes / self.seconds


def sh(cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", cmd], check=check, text=True, capture_output=True)


def fresh(dest: Path) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    sh("sync")


def count_files(folder: Path, suffix: str) -> int:
    return sum(1 for p in folder.rglob(f"*{suffix}") if p.is_file())


def warm(paths: list[Path]) -> None:
    """Read every input once so that all runs start with a warm page cache."""
    for p in paths:
        with p.open("rb") as f:
            while f.read(1 << 24):
                pass


def orthovision_cmd(kind: str, src: Path, dest: Path, jobs: int, fsync: bool) -> list[str]:
    exe = shutil.which("orthovision") or str(Path(sys.executable).with_name("orthovision"))
    cmd = [exe, "convert", str(src), "-o", str(dest), *LABELS[kind], "--jobs", str(jobs), "--quiet"]
    if not fsync:
        cmd.append("--no-fsync")
    return cmd


def run_orthovision(res: Result, src: Path, dest: Path, jobs: int, fsync: bool) -> None:
    fresh(dest)
    cmd = orthovision_cmd(res.kind, src, dest, jobs, fsync)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, text=True, capture_output=True)
    res.times.append(time.perf_counter() - t0)
    report = json.loads((dest / "orthovision-report.json").read_text())
    converted = report["counts"].get("converted", 0)
    if proc.returncode != 0 or converted != res.files or count_files(dest, ".dcm") != res.files:
        raise SystemExit(
            f"orthovision run failed (exit {proc.returncode}, {converted} of "
            f"{res.files} converted): {proc.stdout}{proc.stderr}"
        )
    res.inner.append(float(report["seconds"]))


def run_shell(res: Result, script: str, dest: Path, suffix: str, mkdir: bool = True) -> None:
    fresh(dest)
    if mkdir:
        dest.mkdir(parents=True)
    t0 = time.perf_counter()
    proc = sh(script, check=False)
    res.times.append(time.perf_counter() - t0)
    n = count_files(dest, suffix)
    if proc.returncode != 0 or n != res.files:
        raise SystemExit(
            f"{res.name} failed (exit {proc.returncode}, {n} of {res.files} files): "
            f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )


def bench_kind(
    kind: str, src: Path, paths: list[Path], repeat: int, cpus: int, fsync_modes: list[bool]
) -> list[Result]:
    n = len(paths)
    mb = sum(p.stat().st_size for p in paths) / 1e6
    q = shlex.quote
    results: list[Result] = []
    # cp -r: the floor for "read every byte, write every byte".
    cp_dest = OUT / f"{kind}-cp"
    cp = Result(kind, "cp -r", f"cp -r {q(str(src))} {q(str(cp_dest))}", n, mb, str(cp_dest))
    # cp -r then sync: the same bytes made durable, the floor for a converter that fsyncs.
    cps_dest = OUT / f"{kind}-cp-sync"
    cps = Result(
        kind, "cp -r && sync", f"cp -r {q(str(src))} {q(str(cps_dest))} && sync", n, mb, str(cps_dest)
    )
    results += [cp, cps]
    ext = paths[0].suffix
    if kind == "jpeg":
        loop_dest = OUT / f"{kind}-img2dcm"
        loop = Result(
            kind,
            "img2dcm, shell loop",
            (
                f'for f in {q(str(src))}/*/*{ext}; do img2dcm -vlp "$f" '
                f'{q(str(loop_dest))}/"${{f##*/}}".dcm || exit 1; done'
            ),
            n,
            mb,
            str(loop_dest),
        )
        par_dest = OUT / f"{kind}-img2dcm-par"
        par = Result(
            kind,
            f"img2dcm, xargs -P {cpus}",
            (
                f"find {q(str(src))} -name '*{ext}' -print0 | xargs -0 -P {cpus} -n 1 "
                f'sh -c \'img2dcm -vlp "$1" {q(str(par_dest))}/"${{1##*/}}".dcm\' _'
            ),
            n,
            mb,
            str(par_dest),
        )
        results += [loop, par]
    ov: list[tuple[Result, int, bool]] = []
    for jobs in (cpus, 1):
        for fsync in fsync_modes:
            label = f"orthovision --jobs {jobs}" + ("" if fsync else " --no-fsync")
            dest = OUT / f"{kind}-ov-j{jobs}{'' if fsync else '-nofsync'}"
            r = Result(
                kind,
                label,
                shlex.join(orthovision_cmd(kind, src, dest, jobs, fsync)),
                n,
                mb,
                str(dest),
                peer=False,
            )
            ov.append((r, jobs, fsync))
            results.append(r)
    # Interleave the tools within each repeat so that drift (thermal, neighbours) hits all alike.
    for i in range(repeat):
        print(f"[{kind}] repeat {i + 1}/{repeat}", file=sys.stderr)
        run_shell(cp, cp.command, cp_dest, ext, mkdir=False)  # cp -r creates it
        run_shell(cps, cps.command, cps_dest, ext, mkdir=False)
        if kind == "jpeg":
            run_shell(loop, loop.command, loop_dest, ".dcm")
            run_shell(par, par.command, par_dest, ".dcm")
        for r, jobs, fsync in ov:
            run_orthovision(r, src, Path(r.dest), jobs, fsync)
        for r in results:
            print(f"    {r.name:34s} {r.times[-1]:7.2f} s", file=sys.stderr)
    for r in results:  # leave no 2 GB of outputs behind
        fresh(Path(r.dest))
    return results


def profile(kind: str, paths: list[Path], n: int, fsync: bool, top: int = 40) -> Path:
    """cProfile one `--jobs 1` run (everything in one process) over the first `n` files."""
    import pstats

    dest = OUT / f"{kind}-profile"
    fresh(dest)
    stats = OUT / f"profile-{kind}{'' if fsync else '-nofsync'}.pstats"
    cmd = [
        sys.executable,
        "-m",
        "cProfile",
        "-o",
        str(stats),
        "-m",
        "orthovision_cli",
        "convert",
        *[str(p) for p in paths[:n]],
        "-o",
        str(dest),
        *LABELS[kind],
        "--jobs",
        "1",
        "--quiet",
    ]
    if not fsync:
        cmd.append("--no-fsync")
    print(f"profiling: {shlex.join(cmd)}", file=sys.stderr)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    print(f"profiled run: {time.perf_counter() - t0:.2f} s for {n} files", file=sys.stderr)
    fresh(dest)
    for order in ("tottime", "cumulative"):
        pstats.Stats(str(stats), stream=sys.stderr).sort_stats(order).print_stats(top)
    return stats


def environment(cpus: int) -> dict[str, str]:
    def first(cmd: str) -> str:
        try:
            out = sh(cmd, check=False)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (IndexError, OSError):
            return "?"

    cpu = first("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    return {
        "cpu": f"{cpu}, {cpus} cores used (of {os.cpu_count()})",
        "memory": first("free -g | awk '/Mem:/ {print $2 \" GiB\"}'"),
        "filesystem": first(f"df -T {shlex.quote(str(OUT))} | awk 'NR==2 {{print $2}}'"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "orthovision": first(f"cd {shlex.quote(str(ROOT))} && git rev-parse --short HEAD")
        + (
            " (+ uncommitted changes)"
            if sh(
                f"cd {shlex.quote(str(ROOT))} && git status --porcelain orthovision_cli", check=False
            ).stdout
            else ""
        ),
        "img2dcm": first("img2dcm --version | grep -o 'v[0-9.]*'"),
        "date": time.strftime("%Y-%m-%d"),
        "load average before the run": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def table(results: list[Result]) -> str:
    lines = []
    for kind in ("jpeg", "tiff"):
        rs = [r for r in results if r.kind == kind]
        if not rs:
            continue
        r0 = rs[0]
        unit, target = TARGET[kind]
        what = (
            "24 MP camera JPEGs, pass-through" if kind == "jpeg" else "16-bit film-scan TIFFs, uncompressed"
        )
        lines.append(f"**{r0.files} {what}, {r0.mbytes:,.0f} MB** (target: {target:g} {unit} or more)\n")
        peers = [r for r in rs if r.peer]
        ovs = [r for r in rs if not r.peer]
        lines.append("| tool | seconds (median) | files/s | MB/s | orthovision without start-up |")
        lines.append("| --- | ---: | ---: | ---: | ---: |")
        for r in rs:
            inner = ""
            if r.inner:
                t = statistics.median(r.inner)
                inner = f"{t:.2f} s ({r.files / t:.0f} files/s, {r.mbytes / t:.0f} MB/s)"
            lines.append(
                f"| `{r.name}` | {r.seconds:.2f} | {r.files_per_s:.1f} | {r.mb_per_s:.0f} | {inner} |"
            )
        lines.append("")
        for o in ovs[:2]:  # --jobs <cpus>, with fsync (the default) and --no-fsync
            ratios = [f"{o.files_per_s / p.files_per_s:.2f}x `{p.name}`" for p in peers]
            lines.append(f"Ratios, `{o.name}` (files/s): " + "; ".join(ratios) + ".\n")
    return "\n".join(lines)


def commands(results: list[Result]) -> str:
    return "\n".join(f"# {r.kind}: {r.name}\n{r.command}" for r in results)


def update_docs(text: str) -> None:
    block = f"{BEGIN}\n{text.rstrip()}\n{END}"
    doc = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if BEGIN in doc and END in doc:
        a, b = doc.index(BEGIN), doc.index(END) + len(END)
        doc = doc[:a] + block + doc[b:]
    else:
        doc = doc.rstrip() + f"\n\n## Conversion\n\n{block}\n"
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", default="jpeg,tiff", help="jpeg, tiff or both (default)")
    ap.add_argument("--jpegs", type=int, default=200)
    ap.add_argument("--tiffs", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs to use (default 2)")
    ap.add_argument(
        "--fsync",
        choices=["both", "on", "off"],
        default="both",
        help="orthovision runs with fsync (the default), --no-fsync, or both",
    )
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="instead of timing, cProfile `orthovision --jobs 1` over N files per kind "
        "(stats in bench/_out_convert/profile-<kind>.pstats)",
    )
    ap.add_argument(
        "--update-docs",
        action="store_true",
        help="write the table into the Conversion section of docs/benchmarks.md",
    )
    a = ap.parse_args(argv)
    avail = sorted(os.sched_getaffinity(0))
    cpus = min(a.cpus, len(avail))
    os.sched_setaffinity(0, avail[:cpus])
    kinds = [k.strip() for k in a.kinds.split(",") if k.strip()]
    fsync_modes = {"both": [True, False], "on": [True], "off": [False]}[a.fsync]

    paths = corpus.generate(a.jpegs if "jpeg" in kinds else 0, a.tiffs if "tiff" in kinds else 0)
    if not shutil.which("img2dcm") and "jpeg" in kinds:
        raise SystemExit("img2dcm (DCMTK) is not on PATH")
    OUT.mkdir(parents=True, exist_ok=True)
    env = environment(cpus)
    print("environment: " + json.dumps(env), file=sys.stderr)
    print("warming the page cache ...", file=sys.stderr)
    all_paths = [p for k in kinds for p in paths[k]]
    warm(all_paths)
    # One untimed run of each tool (imports, .pyc files, shared libraries into the cache).
    probe_dest = OUT / "warmup"
    fresh(probe_dest)
    warm_src = paths[kinds[0]][0].parent
    subprocess.run(orthovision_cmd(kinds[0], warm_src, probe_dest, cpus, False), capture_output=True)
    fresh(probe_dest)
    if "jpeg" in kinds:
        sh(f"img2dcm -vlp {shlex.quote(str(paths['jpeg'][0]))} /dev/null", check=False)

    if a.profile:
        for kind in kinds:
            for fsync in fsync_modes:
                profile(kind, paths[kind], a.profile, fsync)
        return 0

    results: list[Result] = []
    for kind in kinds:
        src = corpus.CORPUS / ("jpeg24mp" if kind == "jpeg" else "tiff16")
        on_disk = sum(1 for p in src.rglob("*") if p.is_file())
        if on_disk != len(paths[kind]):
            raise SystemExit(
                f"{src} holds {on_disk} files, not {len(paths[kind])}: delete it to "
                "regenerate, or ask for that many"
            )
        results += bench_kind(kind, src, paths[kind], a.repeat, cpus, fsync_modes)

    argv_text = "python bench/bench_convert.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    env_text = "; ".join(f"{k}: {v}" for k, v in env.items())
    md = (
        f"Command: `{argv_text.strip()}` (median of {a.repeat} runs, warm page cache, "
        f"wall clock including interpreter start-up).\n\nMachine: {env_text}.\n\n"
        + table(results)
        + "\nThe exact commands timed:\n\n```sh\n"
        + commands(results)
        + "\n```\n"
    )
    (OUT / "results.md").write_text(md)
    (OUT / "results.json").write_text(
        json.dumps(
            {
                "environment": env,
                "argv": argv_text,
                "results": [
                    asdict(r) | {"median_s": r.seconds, "files_per_s": r.files_per_s, "mb_per_s": r.mb_per_s}
                    for r in results
                ],
            },
            indent=1,
        )
    )
    print(md)
    if a.update_docs:
        update_docs(md)
        print(f"updated {DOCS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
