"""Decisions teach: review 20 % of a sorted folder, train on those decisions, convert the rest.

Not a speed benchmark: it counts files sent to review and wrong labels written, with the
embedded pack (the peer) and with the pack trained from the decisions, on the same files.

Corpus: the frontal face photographs with ground truth in ../shared/data/labels.csv (at rest:
EV15 or EV17 is right; smiling: EV19), or tests/data's subset where ../shared is missing. Every
fifth file (sorted by path) is "reviewed": a person's decision with the right labels is recorded
for it (as the review page or `convert --confirm` would), and `convert` applies it.

    python bench/bench_review_teach.py
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orthovision_cli.decisions import Decision, DecisionBook, clean  # noqa: E402
from orthovision_cli.inputs.source import content_hash  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
DATA = SHARED if (SHARED / "labels.csv").is_file() else ROOT / "tests" / "data"
OUT = ROOT / "bench" / "_out_review"
PERSON = {"rest": "EV15", "smile": "EV19"}  # what the reviewer picks
RIGHT = {"rest": {"EV15", "EV17"}, "smile": {"EV19"}}


def corpus() -> list[tuple[Path, str]]:
    rows = list(csv.DictReader((DATA / "labels.csv").open()))
    out = []
    for r in rows:
        if not r["path"].startswith("photos/faces_") or not (DATA / r["path"]).is_file():
            continue
        kind = "smile" if "smiling" in r["view"] else "rest"
        out.append((DATA / r["path"], kind))
    return sorted(out)


def orthovision(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orthovision_cli", *args], capture_output=True, text=True, cwd=ROOT
    )


def score(out: Path, truth: dict[str, str]) -> dict[str, int]:
    report = json.loads((out / "orthovision-report.json").read_text())
    counts = {"files": 0, "converted": 0, "review": 0, "wrong": 0, "unknown view": 0}
    for f in report["files"]:
        kind = truth[Path(f["input"]).name]
        counts["files"] += 1
        if f["status"] == "review":
            counts["review"] += 1
            continue
        counts["converted"] += 1
        lab = (f["labels"] or {}).get("protocol") or {}
        value = lab.get("value")
        if not value:
            counts["unknown view"] += 1
        elif value not in RIGHT[kind]:
            counts["wrong"] += 1
    return counts


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    items = corpus()
    reviewed_dir, rest_dir = OUT / "reviewed", OUT / "rest"
    truth = {}
    for i, (path, kind) in enumerate(items):
        dest = (reviewed_dir if i % 5 == 0 else rest_dir) / kind / path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
        truth[path.name] = kind
    decided_out = OUT / "decided"
    orthovision("convert", str(reviewed_dir), "-o", str(decided_out), "-q")
    book = DecisionBook(decided_out)
    book.save(
        [
            clean(
                Decision(
                    str(p.absolute()), content_hash(p), "XC", PERSON[p.parent.name], "HEAD", "0", "bench", ""
                )
            )
            for p in sorted(reviewed_dir.rglob("*.jpg"))
        ]
    )
    applied = orthovision("convert", str(reviewed_dir), "-o", str(decided_out), "-q")
    assert applied.returncode == 0, applied.stderr
    pack = OUT / "pack"
    trained = orthovision("train", "--from-decisions", str(decided_out), "-o", str(pack))
    assert trained.returncode == 0, trained.stderr
    before = orthovision("convert", str(rest_dir), "-o", str(OUT / "rest-embedded"), "-q")
    after = orthovision(
        "convert", str(rest_dir), "-o", str(OUT / "rest-trained"), "-q", "--models", str(pack)
    )
    a, b = score(OUT / "rest-embedded", truth), score(OUT / "rest-trained", truth)
    n_reviewed = sum(1 for _ in reviewed_dir.rglob("*.jpg"))
    print(
        f"corpus: {len(items)} frontal face photographs from {DATA.relative_to(ROOT.parent)}; "
        f"{n_reviewed} reviewed (every fifth), {a['files']} converted after training"
    )
    print(trained.stdout.strip())
    print("\n| pack | files | converted | sent to review | wrong view written | view left unknown | exit |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, c, proc in (("embedded (peer)", a, before), ("trained from the decisions", b, after)):
        print(
            f"| {name} | {c['files']} | {c['converted']} | {c['review']} | {c['wrong']} | "
            f"{c['unknown view']} | {proc.returncode} |"
        )


if __name__ == "__main__":
    main()
