"""A practice teaching the tool, simulated on the open data, one source at a time.

For each source of the open data with at least MIN_SOURCE images (a folder of one origin: the
London faces, the Canada faces, the chest radiographs, the panoramic radiographs, ...), a person
decides 5 % of its images (at least 2 per class, a class being the image's true labels) with the
truth, as the review page would record them (`orthovision-decisions.csv`); `orthovision train
--from-decisions` teaches a pack from those decisions; then the rest of that source is
classified with the default pack (before) and with the taught pack (after). Nothing of a source
is taught from another source, and the rest is never taught from.

Counted per source and in total, as `orthovision classify` reports them:
- converted without review: files not in the review list;
- labels written without review: known labels at or above the review threshold, and the wrong
  ones among them (labels.csv gives the truth; `|` separates accepted alternatives; a tag
  without a truth is not counted; orientation counts for images labelled upright).

The images are copied under neutral names (the folder names would otherwise tell the name
hints the answer). The default pack was fitted on these open images (models/tools/fit_heads.py
measures it leave-one-source-out), so "before" is in-sample for the default heads; what this
bench measures is what teaching adds or takes away.

`--together` adds a run with every labelled image as one mixed archive (5 % of each class
decided, one pack), as a practice with many kinds of images would teach.

    python bench/bench_review_teach.py [--data ../shared/data] [--seed 0] [--seeds 1] [--share 0.05]
        [--together] [--only SOURCE] [--json] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orthovision_cli.decisions import Decision, DecisionBook, clean  # noqa: E402
from orthovision_cli.inputs.source import content_hash  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
MIN_SOURCE = 10  # a source smaller than this has nothing left to convert after teaching
MIN_PER_CLASS = 2
# Radiograph protocols from labels.csv's view text (photographs have ADA-1100 codes).
VIEW_PROTOCOL = {"chest PA/AP": "CHEST_PA", "panoramic": "PANORAMIC", "bitewing": "BITEWING"}
TAGS = ("modality", "protocol", "body_part", "orientation")
ALL = "all sources as one archive"


def source_of(path: str) -> str:
    """The source of an image: its folder (a practice's folder of one origin)."""
    parts = path.split("/")
    if parts[:2] == ["photos", "faces_london"]:
        return "photos/faces_london"  # the same 12 people at rest and smiling
    return "/".join(parts[:-1])


def truth_of(row: dict[str, str]) -> dict[str, list[str]]:
    protocol = row["ada1100"] or VIEW_PROTOCOL.get(row["view"], "")
    return {
        "modality": [v for v in row["modality"].split("|") if v],
        "protocol": [v for v in protocol.split("|") if v],
        "body_part": [v for v in row["body_part"].split("|") if v],
        "orientation": ["0"] if row["upright"] == "yes" else [],
    }


def sources(data: Path) -> dict[str, list[tuple[Path, dict[str, list[str]]]]]:
    out: dict[str, list[tuple[Path, dict[str, list[str]]]]] = defaultdict(list)
    with (data / "labels.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if (data / row["path"]).is_file():
                out[source_of(row["path"])].append((data / row["path"], truth_of(row)))
    return dict(out)


def split(
    items: list[tuple[Path, dict[str, list[str]]]], share: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices decided (share of the source, at least MIN_PER_CLASS per class) and the rest."""
    by_class: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, (_, t) in enumerate(items):
        by_class[tuple(v[0] if v else "" for v in t.values())].append(i)
    rng = random.Random(seed)
    decided: list[int] = []
    for members in by_class.values():
        rng.shuffle(members)
        decided += members[:MIN_PER_CLASS]
    want = math.ceil(share * len(items))
    rest = [i for i in range(len(items)) if i not in decided]
    rng.shuffle(rest)
    while len(decided) < want and rest:
        decided.append(rest.pop())
    return sorted(decided), sorted(rest)


def orthovision(*args: str, ok: tuple[int, ...] = (0, 4)) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "orthovision_cli", *args], capture_output=True, text=True, cwd=ROOT
    )
    if proc.returncode not in ok:
        raise SystemExit(f"orthovision {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def classify(folder: Path, pack: Path | None) -> dict[str, Any]:
    args = ["classify", str(folder), "--format", "json"] + (["--models", str(pack)] if pack else [])
    return dict(json.loads(orthovision(*args).stdout))


def score(result: dict[str, Any], truth: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    threshold = result["min_confidence"]
    c: dict[str, Any] = {"files": 0, "converted": 0, "written": 0, "wrong": 0, "mistakes": [], "why": {}}
    for im in result["images"]:
        name = Path(im["path"]).name
        c["files"] += 1
        if im.get("review"):
            why = ",".join(sorted(im["review"])) if isinstance(im["review"], list) else str(im["review"])
            c["why"][why] = c["why"].get(why, 0) + 1
            continue
        c["converted"] += 1
        for tag in TAGS:
            lab = im["labels"].get(tag) or {}
            accepted = truth[name][tag]
            if lab.get("value") is None or not accepted or lab["confidence"] < threshold:
                continue
            c["written"] += 1
            if lab["value"] not in accepted:
                c["wrong"] += 1
                c["mistakes"].append(f"{name} {tag}={lab['value']} (truth {'|'.join(accepted)})")
    return c


def run_source(
    name: str, items: list[tuple[Path, dict[str, list[str]]]], work: Path, share: float, seed: int
) -> dict[str, Any]:
    decided, rest = split(items, share, seed)
    inbox, rest_dir, out = work / "decided", work / "rest", work / "out"
    for d in (inbox, rest_dir, out):
        d.mkdir(parents=True)
    truth: dict[str, dict[str, list[str]]] = {}
    decisions: list[Decision] = []
    for k, i in enumerate(decided + rest):
        src, t = items[i]
        dest = (inbox if i in decided else rest_dir) / f"img{k:04d}{src.suffix.lower()}"
        shutil.copyfile(src, dest)
        truth[dest.name] = t
        if i in decided:
            # The person answers with the truth (its first accepted value).
            values = {tag: (t[tag][0] if t[tag] else "") for tag in TAGS}
            decisions.append(clean(Decision(str(dest.absolute()), content_hash(dest), **values)))
    DecisionBook(out).save(decisions)
    pack = work / "pack"
    trained = orthovision("train", "--from-decisions", str(out), "-o", str(pack), ok=(0, 2))
    before = score(classify(rest_dir, None), truth)
    # Nothing could be taught (exit 2, said so): the rest is classified as before.
    after = score(classify(rest_dir, pack if trained.returncode == 0 else None), truth)
    return {
        "source": name,
        "images": len(items),
        "decided": len(decided),
        "before": before,
        "after": after,
        "train": (trained.stdout + trained.stderr).strip(),
    }


def summed(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs (sources, or draws of one source) added up."""
    out: dict[str, Any] = {"source": name, "images": 0, "decided": 0}
    for when in ("before", "after"):
        out[when] = {"files": 0, "converted": 0, "written": 0, "wrong": 0, "mistakes": [], "why": {}}
        for r in runs:
            for key in ("files", "converted", "written", "wrong"):
                out[when][key] += r[when][key]
            out[when]["mistakes"] += r[when]["mistakes"]
            for why, n in r[when]["why"].items():
                out[when]["why"][why] = out[when]["why"].get(why, 0) + n
    for r in runs:
        out["images"] += r["images"]
        out["decided"] += r["decided"]
    return out


def pct(n: int, d: int) -> str:
    return f"{100 * n / d:.1f} %" if d else "-"


def row(label: str, r: dict[str, Any]) -> str:
    b, a = r["before"], r["after"]
    return (
        f"| {label} | {r['images']} | {r['decided']} | {b['files']} "
        f"| {b['converted']} ({pct(b['converted'], b['files'])}) | {b['wrong']}/{b['written']} "
        f"| {a['converted']} ({pct(a['converted'], a['files'])}) | {a['wrong']}/{a['written']} "
        f"({pct(a['wrong'], a['written'])}) |"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=SHARED)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--share", type=float, default=0.05)
    ap.add_argument("--only", action="append", default=[], help="a source (folder) to run; repeatable")
    ap.add_argument("--seeds", type=int, default=1, help="draws of the decided files, summed")
    ap.add_argument("--together", action="store_true", help="also: every source as one archive")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (packs, copies)")
    a = ap.parse_args()
    small: set[str] = set()
    if a.keep:
        shutil.rmtree(a.keep, ignore_errors=True)
        a.keep.mkdir(parents=True)
    work = contextlib.nullcontext(str(a.keep)) if a.keep else tempfile.TemporaryDirectory(prefix="ov-teach-")
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    together: list[dict[str, Any]] = []
    found = sources(a.data)
    with work as tmp:
        for seed in range(a.seed, a.seed + a.seeds):
            for k, (name, items) in enumerate(sorted(found.items())):
                if a.only and name not in a.only:
                    continue
                _decided, rest = split(items, a.share, seed)
                if len(items) < MIN_SOURCE or not rest:
                    small.add(f"{name} ({len(items)})")
                    continue
                by_source[name].append(run_source(name, items, Path(tmp) / f"s{k}-{seed}", a.share, seed))
            if a.together:
                # Every labelled image as one archive: one pack taught from 5 % of each class.
                everything = [item for _, items in sorted(found.items()) for item in items]
                together.append(run_source(ALL, everything, Path(tmp) / f"all-{seed}", a.share, seed))
    results = [summed(name, runs) for name, runs in by_source.items()]
    total = summed("total", results)
    mixed = summed(ALL, together) if together else None
    if a.json:
        out = {"sources": results, "total": total, "together": mixed, "too_small": sorted(small)}
        print(json.dumps(out, indent=1))
        return 0
    draws = f", summed over {a.seeds} draws (seeds {a.seed}-{a.seed + a.seeds - 1})" if a.seeds > 1 else ""
    print(
        f"open data: {a.data}; {a.share:.0%} decided per source (at least {MIN_PER_CLASS} per class){draws}"
    )
    print(f"sources under {MIN_SOURCE} images or with nothing left: {', '.join(sorted(small))}\n")
    print(
        "| source | images | decided | rest | before: converted without review | before: wrong/written "
        "| after teaching: converted without review | after: wrong/written |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(row(r["source"], r))
    print(row("**total**", total))
    if mixed is not None:
        print(row(ALL, mixed))
    for r in [total] + ([mixed] if mixed else []):
        for when in ("before", "after"):
            for m in r[when]["mistakes"]:
                print(f"  wrong {when} ({r['source']}): {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
