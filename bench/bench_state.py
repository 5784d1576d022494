"""State size and the cost of a run that adds files (issue 25: compact state, incremental planning).

Makes N tiny distinct JPEGs with Pillow in a temp folder (`--per-folder` a folder, the way an
archive holds a visit a folder), converts them (`--no-models --jobs 2`), then measures:
state.sqlite bytes per file, a re-run with nothing new, and a run that adds 1 % new files, in
new folders (a day's new visits) or, with `--spread`, one each into existing folders (the worst
case: every touched folder's earlier plans are read). Each run is a fresh `orthovision convert`
process; peak RSS is the coordinator's own (`ru_maxrss` as it exits).

    python bench/bench_state.py --n 10000
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image


def make_jpegs(root: Path, start: int, count: int, per_folder: int, spread: int = 0) -> None:
    """`count` distinct 16x16 JPEGs numbered from `start`; `spread` > 0 puts one into each of
    the first `spread` existing folders instead of new ones."""
    for i in range(start, start + count):
        folder = (i - start) % spread if spread else i // per_folder
        d = root / f"visit{folder:05d}"
        d.mkdir(parents=True, exist_ok=True)
        # Noise seeded by the number: distinct content, so every file is converted (a copy
        # would be a duplicate).
        img = Image.frombytes("RGB", (16, 16), random.Random(i).randbytes(16 * 16 * 3))
        img.save(d / f"img{i:07d}.jpg", quality=90)


# The coordinator's own peak RSS, printed as it exits (its workers are other processes).
WRAP = (
    "import atexit, resource, runpy, sys\n"
    "atexit.register(lambda: print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
    " file=sys.stderr))\n"
    "sys.argv = ['orthovision', *sys.argv[1:]]\n"
    "runpy.run_module('orthovision_cli', run_name='__main__')\n"
)


def convert(src: Path, out: Path, jobs: int) -> tuple[float, float]:
    """(seconds, the coordinator's peak RSS in MB) of one `convert`."""
    cmd = [sys.executable, "-c", WRAP, "convert", str(src), "-o", str(out)]
    cmd += ["--no-models", "--jobs", str(jobs), "--no-fsync", "--modality", "XC", "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode not in (0, 4):
        sys.exit(f"convert failed ({proc.returncode}): {proc.stderr[-2000:]}")
    kb = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_KB")]
    return seconds, (kb[-1] / 1024 if kb else 0.0)


def state_bytes(out: Path) -> int:
    folder = out / ".orthovision"
    return sum(p.stat().st_size for p in folder.glob("state.sqlite*"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--per-folder", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--spread", action="store_true", help="add the 1 % into existing folders")
    ap.add_argument("--keep", type=Path, help="work in this folder (kept) instead of a temp one")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-state-"))
    src, out = work / "in", work / "out"
    try:
        make_jpegs(src, 0, args.n, args.per_folder)
        first, rss_first = convert(src, out, args.jobs)
        size = state_bytes(out)
        with sqlite3.connect(out / ".orthovision" / "state.sqlite") as db:
            plan = db.execute("SELECT AVG(LENGTH(plan_input)) FROM inputs").fetchone()[0] or 0
        noop, rss_noop = convert(src, out, args.jobs)
        add = max(1, args.n // 100)
        folders = (args.n + args.per_folder - 1) // args.per_folder
        make_jpegs(src, args.n, add, args.per_folder, spread=min(add, folders) if args.spread else 0)
        plus, rss_plus = convert(src, out, args.jobs)
        where = "into existing folders" if args.spread else "in new folders"
        print(f"N={args.n} ({args.per_folder} a folder), --jobs {args.jobs}; coordinator peak RSS")
        print(f"first run          {first:7.1f} s  {args.n / first:6.0f} files/s  {rss_first:.0f} MB")
        print(f"state.sqlite       {size / args.n:7.0f} bytes a file (stored plan {plan:.0f} bytes)")
        print(f"re-run, no change  {noop:7.2f} s  {rss_noop:.0f} MB")
        print(f"+1 % ({add} {where}) {plus:7.2f} s  {rss_plus:.0f} MB")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
