"""The long fuzz run (issue 16): N seeded mutations of real images (tests/fuzz/mutators.py),
converted as one batch and classified, with every robustness problem listed (tests/fuzz/
harness.py: hangs, batch crashes, tracebacks, undocumented reasons, internal errors, leftovers,
unreadable outputs) and the peak RSS of the whole process tree.

    python bench/fuzz.py --files 2200 --jobs 2 --seed 16 --work /tmp/fuzz

Prints the figures as JSON (docs/robustness.md quotes them). Exit status 1 when any problem
was found.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fuzz"))

import harness
import mutators


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2200)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=1800.0, help="per command, seconds")
    ap.add_argument("--work", type=Path, default=Path("/tmp/orthovision-fuzz"))
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    start = time.perf_counter()
    made = mutators.make_corpus(args.work / "in", args.files, seed=args.seed)
    built = time.perf_counter() - start
    conv = harness.convert(args.work / "in", args.work / "out", jobs=args.jobs, timeout=args.timeout)
    clas = harness.classify(args.work / "in", timeout=args.timeout)
    figures = {
        "files": len(made),
        "seed": args.seed,
        "jobs": args.jobs,
        "seeds": sorted(mutators.seeds()),
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
            for r in (conv, clas)
        ],
    }
    print(json.dumps(figures, indent=2))
    return 1 if conv.problems or clas.problems else 0


if __name__ == "__main__":
    sys.exit(main())
