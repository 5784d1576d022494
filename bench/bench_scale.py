"""How `orthovision convert` scales with the number of files (issue 25): time, files/s, peak
memory, state and report size, a re-run with nothing new, a run that adds 1 %, and `dicomdir`,
at several N; the peers in the same run: `cp -r && sync` of the inputs and DCMTK `img2dcm`.

    python bench/bench_scale.py                          # N = 1000, 10000
    python bench/bench_scale.py --sizes 1000,10000,100000 --json bench/_out_scale/results.json
    PYTHONPATH=/path/to/other/checkout python bench/bench_scale.py   # that checkout's code

Corpus (`bench/_corpus/scale-N/`, generated once, git-ignored): N tiny real JPEGs (64x48,
Pillow, quality 85), each a different crop of a photograph in sample_data/photos with its own
noise (no two share content: the converter converts identical content once), spread as a
practice archive is: `P00001/20190107/IMG_000001.jpg`, about 25 files a patient in 3 visits of
about 8. One in three carries an EXIF DateTimeOriginal. Converted with
`--path-template '{PatientID}/{StudyDate}/*' --no-models --modality XC --body-part HEAD --jobs 2`
(patients, studies and series as in a real archive).

For each N, in this order: `cp -r SRC DEST && sync` (the floor for touching every byte once,
durably); `img2dcm -vlp` on a sample of `--img2dcm-sample` inputs spread evenly over the
corpus, one process per file two at a time (`xargs -P 2`), extrapolated to N as
(seconds of the sample) x N / sample: one process per file shares nothing between files, so
its cost per file does not depend on N; the first `convert` into a fresh folder; the re-run
with nothing new; 1 % new files added (half new visits of existing patients, half new
patients) and a run over all of it (a `sync` before each of these two, as a nightly run finds
the disk: a run's group commit is a syncfs, which would otherwise also wait for the writeback
of everything before it); `orthovision dicomdir` of that output. The added files are
removed again at the end (so the corpus stays N).

Memory: the coordinator's (the `convert` process's) peak RSS is its own `ru_maxrss`, written
when it exits (the installed `orthovision` script runs under a small wrapper); the process
tree's peak is the largest sum of RSS (and of PSS, shared pages split) over the coordinator and
its worker processes, sampled from /proc every 50 ms. Sizes: `.orthovision/state.sqlite*`
after the run, `orthovision-report.json` and, where the run writes one, `orthovision-report.jsonl`.
Every run is checked (exit status, the report's counts) so that a fast failure never passes as
a fast run. Works on whatever this checkout's `orthovision` does: it only measures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CORPUS = BENCH / "_corpus"
OUT = BENCH / "_out_scale"
EXE = shutil.which("orthovision") or str(Path(sys.executable).with_name("orthovision"))
ARGS = [
    "--path-template",
    "{PatientID}/{StudyDate}/*",
    "--no-models",
    "--modality",
    "XC",
    "--body-part",
    "HEAD",
    "--jobs",
    "2",
    "--quiet",
]
PER_PATIENT, PER_VISIT = 25, 8
W, H = 64, 48

# ------------------------------------------------------------------ corpus


def _photo() -> np.ndarray:
    im = Image.open(ROOT / "sample_data" / "photos" / "sample_NikonD90.JPG").convert("RGB")
    return np.asarray(im.resize((640, 480), Image.BILINEAR), dtype=np.int16)


def _where(i: int, patient: int, visit: int) -> Path:
    day = date(2019, 1, 7) + timedelta(days=(patient * 7) % 1500 + visit * 91)
    return Path(f"P{patient:05d}") / day.strftime("%Y%m%d") / f"IMG_{i:06d}.jpg"


def _jpeg(base: np.ndarray, i: int, when: date | None) -> bytes:
    rng = np.random.default_rng(i)
    y, x = (i * 7919) % (base.shape[0] - H), (i * 104729) % (base.shape[1] - W)
    px = base[y : y + H, x : x + W] + rng.integers(-12, 13, (H, W, 3), dtype=np.int16)
    buf = io.BytesIO()
    exif = b""
    if when is not None:
        ex = Image.Exif()
        ex[0x010F] = "Canon"
        ex.get_ifd(0x8769)[0x9003] = f"{when:%Y:%m:%d} 10:{i % 60:02d}:00"
        exif = ex.tobytes()
    Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=85, exif=exif)
    return buf.getvalue()


def _write(base: np.ndarray, src: Path, i: int, rel: Path) -> Path:
    p = src / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    when = date(int(rel.parts[1][:4]), int(rel.parts[1][4:6]), int(rel.parts[1][6:])) if i % 3 == 0 else None
    p.write_bytes(_jpeg(base, i, when))
    return p


def corpus(n: int) -> Path:
    """bench/_corpus/scale-N, generated unless complete."""
    src = CORPUS / f"scale-{n}"
    done = src.with_name(src.name + ".complete")
    if not done.exists():
        print(f"generating {n} JPEGs in {src} ...", file=sys.stderr)
        shutil.rmtree(src, ignore_errors=True)
        base = _photo()
        for i in range(n):
            patient, k = divmod(i, PER_PATIENT)
            _write(base, src, i, _where(i, patient, k // PER_VISIT))
        done.write_text("")
    return src


def add_new(src: Path, n: int) -> list[Path]:
    """1 % new files: half new visits of existing patients, half new patients."""
    base, extra = _photo(), max(1, n // 100)
    made = []
    for j in range(extra):
        i = n + j
        if j < extra // 2:
            rel = _where(i, j // PER_VISIT, 20)  # a visit years after the others
        else:
            patient = -(-n // PER_PATIENT) + (j - extra // 2) // PER_PATIENT
            rel = _where(i, patient, (j % PER_PATIENT) // PER_VISIT)
        made.append(_write(base, src, i, rel))
    return made


def remove_new(src: Path, n: int) -> None:
    """Whatever add_new put there (also after an interrupted bench)."""
    for p in src.glob("P*/*/IMG_*.jpg"):
        if int(p.stem[4:]) >= n:
            p.unlink()
            for d in (p.parent, p.parent.parent):
                if not any(d.iterdir()):
                    d.rmdir()


# ------------------------------------------------------------------ measuring

# The installed `orthovision` script, run by a wrapper that writes the coordinator's own peak
# RSS and CPU (and its reaped workers' CPU) when it exits. The script's own folder, not the
# current one, is first on sys.path, as when it runs itself: the code measured is the installed
# one (or PYTHONPATH's), whatever folder the bench runs from.
WRAP = """
import atexit, json, os, resource, runpy, sys
_me = os.getpid()
def _stats():
    if os.getpid() != _me:
        return
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(os.environ["BENCH_SCALE_STATS"], "w") as f:
        json.dump({"maxrss_kb": s.ru_maxrss, "cpu": s.ru_utime + s.ru_stime,
                   "children_cpu": c.ru_utime + c.ru_stime}, f)
atexit.register(_stats)
sys.argv = sys.argv[1:]
sys.path[0] = os.path.dirname(sys.argv[0])  # as when the script runs itself: not the current folder
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:  # a process may end between the listing and the read
        tasks = list(Path(f"/proc/{pid}/task").glob("*"))
    except OSError:
        return out
    for task in tasks:
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for k in kids:
            out += _tree(int(k))
    return out


def _kb(text: str, key: str) -> int:
    m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


def _memory(pids: list[int]) -> tuple[int, int]:
    """Summed (RSS, PSS) in kB."""
    rss = pss = 0
    for pid in pids:
        try:
            rss += _kb(Path(f"/proc/{pid}/status").read_text(), "VmRSS")
            pss += _kb(Path(f"/proc/{pid}/smaps_rollup").read_text(), "Pss")
        except OSError:
            pass
    return rss, pss


def measured(cmd: list[str], timeout: float = 3600) -> dict[str, Any]:
    """Run `orthovision ...` (cmd without the executable); wall seconds, exit code, the
    coordinator's peak RSS and CPU, the tree's peak summed RSS and PSS."""
    stats = OUT / "stats.json"
    stats.unlink(missing_ok=True)
    log = OUT / "stderr.txt"
    tmp = OUT / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    t0 = time.perf_counter()
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", WRAP, EXE, *cmd],
            stdout=subprocess.DEVNULL,
            stderr=err,
            # pydicom stages copies in the temp folder: ours, removed after each run
            env={**os.environ, "BENCH_SCALE_STATS": str(stats), "TMPDIR": str(tmp)},
        )
        peak = [0, 0]
        while proc.poll() is None:
            rss, pss = _memory(_tree(proc.pid))
            peak = [max(peak[0], rss), max(peak[1], pss)]
            if time.perf_counter() - t0 > timeout:
                proc.kill()
            time.sleep(0.05)
    wall = time.perf_counter() - t0
    shutil.rmtree(tmp, ignore_errors=True)
    own = json.loads(stats.read_text()) if stats.exists() else {}
    return {
        "seconds": round(wall, 3),
        "exit": proc.returncode,
        "timed_out": wall > timeout,
        "coordinator_peak_rss_mb": round(own.get("maxrss_kb", 0) / 1024, 1),
        "coordinator_cpu_s": round(own.get("cpu", 0.0), 2),
        "workers_cpu_s": round(own.get("children_cpu", 0.0), 2),
        "tree_peak_rss_mb": round(peak[0] / 1024, 1),
        "tree_peak_pss_mb": round(peak[1] / 1024, 1),
        "stderr_tail": log.read_text()[-400:],
    }


def counts(out: Path) -> dict[str, int]:
    """The report's counts (its summary, however the rest of it is laid out)."""
    with (out / "orthovision-report.json").open() as f:
        head = f.read(4096)
    m = re.search(r'"counts":\s*(\{[^}]*\})', head)
    if m:
        return dict(json.loads(m.group(1)))
    return dict(json.loads((out / "orthovision-report.json").read_text())["counts"])


def check(what: str, run: dict[str, Any], out: Path, want: dict[str, int]) -> None:
    got = counts(out)
    run["counts"] = got
    bad = run["exit"] != 0 or any(got.get(k, 0) != v for k, v in want.items())
    if bad:
        raise SystemExit(f"{what}: exit {run['exit']}, counts {got}, wanted {want}\n{run['stderr_tail']}")


def sizes(out: Path, n: int) -> dict[str, Any]:
    state = sum(p.stat().st_size for p in (out / ".orthovision").glob("state.sqlite*"))
    folder = sum(p.stat().st_size for p in (out / ".orthovision").rglob("*") if p.is_file())
    report = out / "orthovision-report.json"
    lines = out / "orthovision-report.jsonl"
    return {
        "state_mb": round(state / 1e6, 2),
        "state_bytes_per_file": round(state / n),
        "state_folder_mb": round(folder / 1e6, 2),  # everything under .orthovision/
        "report_json_mb": round(report.stat().st_size / 1e6, 2),
        "report_jsonl_mb": round(lines.stat().st_size / 1e6, 2) if lines.exists() else None,
    }


def shell(cmd: str, timeout: float = 3600) -> float:
    t0 = time.perf_counter()
    subprocess.run(["sh", "-c", cmd], check=True, timeout=timeout)
    return time.perf_counter() - t0


def one_size(n: int, args: argparse.Namespace) -> dict[str, Any]:
    src = corpus(n)
    remove_new(src, n)
    inputs = sorted(src.rglob("*.jpg"))
    assert len(inputs) == n, (len(inputs), n)
    for p in inputs:  # page cache warm for every run alike
        p.read_bytes()
    out, media = OUT / f"out-{n}", OUT / f"media-{n}"
    cp, i2d = OUT / f"cp-{n}", OUT / f"img2dcm-{n}"
    for d in (out, media, cp, i2d):
        shutil.rmtree(d, ignore_errors=True)
    subprocess.run(["sync"])
    res: dict[str, Any] = {"files": n, "commands": {}}
    cmds = res["commands"]

    print(f"[{n}] cp -r && sync", file=sys.stderr)
    cmds["cp"] = f"cp -r {shlex.quote(str(src))} {shlex.quote(str(cp))} && sync"
    res["cp_sync_s"] = round(shell(cmds["cp"]), 3)
    shutil.rmtree(cp)

    sample = inputs[:: max(1, n // args.img2dcm_sample)][: args.img2dcm_sample]
    i2d.mkdir(parents=True)
    listing = OUT / f"img2dcm-{n}.txt"
    listing.write_text("".join(f"{p}\n" for p in sample))
    cmds["img2dcm"] = (
        f"xargs -a {shlex.quote(str(listing))} -d '\\n' -P 2 -n 1 "
        f'sh -c \'img2dcm -vlp "$1" {shlex.quote(str(i2d))}/"${{1##*/}}".dcm\' _'
    )
    print(f"[{n}] img2dcm on {len(sample)}", file=sys.stderr)
    t = shell(cmds["img2dcm"])
    assert len(list(i2d.glob("*.dcm"))) == len(sample)
    res["img2dcm"] = {
        "sample": len(sample),
        "sample_s": round(t, 3),
        "extrapolated_s": round(t * n / len(sample), 2),
    }
    shutil.rmtree(i2d)

    convert = ["convert", str(src), "-o", str(out), *ARGS]
    cmds["convert"] = shlex.join([EXE, *convert])
    print(f"[{n}] convert", file=sys.stderr)
    subprocess.run(["sync"])
    first = measured(convert)
    check("convert", first, out, {"converted": n})
    first["files_per_s"] = round(n / first["seconds"], 1)
    first["ms_per_file"] = round(first["seconds"] * 1000 / n, 3)
    first["cpu_ms_per_file"] = round((first["coordinator_cpu_s"] + first["workers_cpu_s"]) * 1000 / n, 3)
    res["convert"] = first
    res.update(sizes(out, n))

    # A nightly run starts long after the last one: the disk has written back the first run's
    # N files by then, which a run's own syncfs would otherwise wait for (and be timed with).
    subprocess.run(["sync"])
    print(f"[{n}] re-run, nothing new", file=sys.stderr)
    again = measured(convert)
    check("re-run", again, out, {"converted": 0})
    res["rerun"] = again

    added = add_new(src, n)
    subprocess.run(["sync"])  # the day's new files are on disk before the night's run
    try:
        print(f"[{n}] +{len(added)} new files", file=sys.stderr)
        plus = measured(convert)
        check("+1 %", plus, out, {"converted": len(added)})
        plus["added"] = len(added)
        res["add1pct"] = plus
        res["after_add"] = sizes(out, n + len(added))

        dicomdir = ["dicomdir", str(out), "--to", str(media)]
        cmds["dicomdir"] = shlex.join([EXE, *dicomdir])
        print(f"[{n}] dicomdir", file=sys.stderr)
        dd = measured(dicomdir, timeout=args.dicomdir_timeout)
        if not dd["timed_out"] and (dd["exit"] != 0 or not (media / "DICOMDIR").is_file()):
            raise SystemExit(f"dicomdir: exit {dd['exit']}\n{dd['stderr_tail']}")
        dd["instances"] = n + len(added)
        res["dicomdir"] = dd
    finally:
        remove_new(src, n)
    shutil.rmtree(media, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return res


# ------------------------------------------------------------------ report


def _mb(run: dict[str, Any]) -> str:
    return f"{run['coordinator_peak_rss_mb']:.0f}"


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| N files | convert | files/s | ms a file | CPU ms a file | coordinator peak RSS | tree peak RSS (PSS) | "
        "state.sqlite | report.json (.jsonl) | re-run, nothing new | add 1 % | dicomdir | "
        "`cp -r && sync` | img2dcm -P 2, extrapolated |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        c, a, p, d = r["convert"], r["rerun"], r["add1pct"], r["dicomdir"]
        jl = f" ({r['report_jsonl_mb']:.1f} MB)" if r["report_jsonl_mb"] is not None else ""
        dd = f">{d['seconds']:.0f} s (stopped)" if d["timed_out"] else f"{d['seconds']:.1f} s"
        rows.append(
            f"| {r['files']:,} | {c['seconds']:.1f} s | {c['files_per_s']:.0f} | {c['ms_per_file']:.2f} | "
            f"{c['cpu_ms_per_file']:.2f} | "
            f"{_mb(c)} MB | {c['tree_peak_rss_mb']:.0f} ({c['tree_peak_pss_mb']:.0f}) MB | "
            f"{r['state_mb']:.1f} MB ({r['state_bytes_per_file']:,} B a file) | {r['report_json_mb']:.1f} MB{jl} | "
            f"{a['seconds']:.1f} s, {_mb(a)} MB | {p['seconds']:.1f} s, {_mb(p)} MB | {dd} | "
            f"{r['cp_sync_s']:.1f} s | {r['img2dcm']['extrapolated_s']:.0f} s |"
        )
    return "\n".join(rows)


def growth(results: list[dict[str, Any]]) -> list[str]:
    """Per-file ratios: largest N against smallest (time), and against the one before (memory)."""
    if len(results) < 2:
        return []
    lo, hi, prev = results[0], results[-1], results[-2]
    k = hi["files"] / lo["files"]

    def per_file(r: dict[str, Any], key: str) -> float:
        return float(r[key]["seconds"]) / r["files"]

    lines = [
        f"per-file convert time, {hi['files']:,} vs {lo['files']:,}: "
        f"{per_file(hi, 'convert') / per_file(lo, 'convert'):.2f}x",
        f"per-file re-run time: {per_file(hi, 'rerun') / per_file(lo, 'rerun'):.2f}x",
        f"+1 % run time: {hi['add1pct']['seconds'] / lo['add1pct']['seconds']:.2f}x for {k:.0f}x the files",
        f"coordinator peak RSS, {hi['files']:,} vs {prev['files']:,}: "
        f"{hi['convert']['coordinator_peak_rss_mb'] / prev['convert']['coordinator_peak_rss_mb']:.2f}x "
        f"(+1 % run: {hi['add1pct']['coordinator_peak_rss_mb'] / prev['add1pct']['coordinator_peak_rss_mb']:.2f}x)",
        f"state bytes a file, {hi['files']:,} vs {lo['files']:,}: "
        f"{hi['state_bytes_per_file'] / lo['state_bytes_per_file']:.2f}x",
    ]
    if not (hi["dicomdir"]["timed_out"] or lo["dicomdir"]["timed_out"]):
        lines.append(f"per-file dicomdir time: {per_file(hi, 'dicomdir') / per_file(lo, 'dicomdir'):.2f}x")
    return lines


def machine() -> dict[str, Any]:
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "revision": rev.stdout.strip(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000", help="comma-separated N, e.g. 1000,10000,100000")
    ap.add_argument("--img2dcm-sample", type=int, default=200, help="inputs given to img2dcm per N")
    ap.add_argument(
        "--dicomdir-timeout", type=float, default=1800, help="stop dicomdir after this many seconds"
    )
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the output folders")
    args = ap.parse_args()
    # SIGTERM (timeout(1), a CI cancel) unwinds as Ctrl-C does: the clean-up in `finally` runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    OUT.mkdir(parents=True, exist_ok=True)
    info = machine()
    results = [one_size(int(s), args) for s in args.sizes.split(",")]
    print(
        f"\n{info['cpus']} CPUs, Python {info['python']}, orthovision at {info['revision']}, "
        f"{info['date']}, load average before {info['load_before']}"
    )
    print(table(results))
    for line in growth(results):
        print(line)
    print("\ncommands (N = last size):")
    for cmd in results[-1]["commands"].values():
        print(cmd)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
