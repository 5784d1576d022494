"""The long fuzz run (issues 16, 23): N seeded mutations of real images (tests/fuzz/
mutators.py), converted as one batch and classified; then seeded containers, names and
EXIF/MPF segments (tests/fuzz/containers.py) as a second batch, and hand-typed manifests, one
run each. Every robustness problem is listed (tests/fuzz/harness.py: hangs, batch crashes,
tracebacks, undocumented reasons, internal errors, leftovers, unreadable outputs, silent losses:
every input in the report exactly once, dciodvfy errors) with the peak RSS of the process tree.

    python bench/fuzz.py --files 2200 --containers 200 --manifests 60 --jobs 2 --work /tmp/fuzz

Prints the figures as JSON (docs/robustness.md quotes them). Exit status 1 when any problem
was found.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fuzz"))

import containers
import harness
import mutators


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2200)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--containers", type=int, default=200, help="zips, names, EXIF/MPF files")
    ap.add_argument("--manifests", type=int, default=60, help="hand-typed manifests, a run each")
    ap.add_argument("--no-dciodvfy", action="store_true", help="skip dciodvfy on the image batch")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per command, seconds")
    ap.add_argument("--work", type=Path, default=Path("/tmp/orthovision-fuzz"))
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    start = time.perf_counter()
    made = mutators.make_corpus(args.work / "in", args.files, seed=args.seed)
    built = time.perf_counter() - start
    conv = harness.convert(args.work / "in", args.work / "out", jobs=args.jobs, timeout=args.timeout)
    if not args.no_dciodvfy:
        conv.problems.extend(harness.dciodvfy_errors(args.work / "out"))
    clas = harness.classify(args.work / "in", timeout=args.timeout)
    boxes = containers.make_containers(args.work / "containers", args.containers, seed=args.seed)
    cont = harness.convert(
        args.work / "containers",
        args.work / "containers-out",
        jobs=args.jobs,
        timeout=args.timeout,
        extra=containers.ZIP_OPTIONS,
    )
    cont.command = "convert (containers)"
    cont.problems.extend(harness.dciodvfy_errors(args.work / "containers-out"))
    man = harness.Run("convert --manifest (each)", args.manifests)
    for src, manifest in containers.make_manifests(args.work / "manifests", args.manifests, seed=args.seed):
        one = harness.convert_manifest(src, manifest, src.parent / "out", timeout=args.timeout)
        man.seconds += one.seconds
        man.peak_rss = max(man.peak_rss, one.peak_rss)
        man.counts.update({f"exit {one.exit_code}": 1, **one.counts})
        man.problems.extend(f"{src.parent.name}: {p}" for p in one.problems)
    runs = (conv, clas, cont, man)
    figures = {
        "files": len(made),
        "seed": args.seed,
        "jobs": args.jobs,
        "seeds": sorted(mutators.seeds()),
        "containers": len(boxes),
        "container_kinds": dict(sorted(Counter(boxes.values()).items())),
        "manifests": args.manifests,
        "corpus_seconds": round(built, 1),
        "runs": [
            {
                "command": r.command,
                "seconds": round(r.seconds, 1),
                "exit_code": r.exit_code,
                "peak_rss_mib": round(r.peak_rss / 2**20),
                "counts": dict(sorted(r.counts.items())),
                "problems": r.problems,
            }
            for r in runs
        ],
    }
    print(json.dumps(figures, indent=2))
    return 1 if any(r.problems for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
