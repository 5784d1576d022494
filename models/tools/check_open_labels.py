# SPDX-License-Identifier: Apache-2.0
"""End to end on the open data: what `orthovision classify` writes without review, against
labels.csv, on every labelled image under neutral names, two in five left as stored and the
others turned a random quarter turn (lossless PNG copies, EXIF dropped).

    python models/tools/check_open_labels.py [--data ../shared/data] [--seed 7] [--json]
        [--radiographs none,film,digital,source]
    python models/tools/check_open_labels.py --loso [--data ../shared/data] [--cache DIR] [--json]
        [--shift gamma0.5|gamma2|dark|flat|equalize|small0.2]

`--loso` (models/tools/check_loso.py) is the honest figure for radiographs: for each source in
turn, the radiograph heads and their calibration are fitted without it, and `classify` runs on
its films at 0, 90, 180 and 270 degrees; per kind it reports right beside right-and-sure.
`--shift` stores the left-out films as another scanner or export would (a contrast curve, a
small export): what a new scanner's look costs (docs/models.md).

These images are among those the pack was fitted on: the figures say whether a label written
without review contradicts the open labels (a dishonest label), not how well the pack
generalises (leave-one-source-out: models/tools/fit_heads.py). A tag counts only where
labels.csv gives a value (`|` separates accepted alternatives); the orientation counts only for
images labelled upright, as the clockwise turn that undoes the one applied.

`--radiographs` gives classify the batch fact (issue 20), one report per value given
(comma-separated; `none`: no fact): `film` or `digital` for every image
(one fact for the whole mixed set: wrong for the sources of the other kind), or `source`: each
source folder (the first two parts of its path, e.g. `radiographs/ceph`) with the fact its own
radiographs' labels state (RG: film; DX or CR: digital), as a researcher would say it once per
archive. "Without review" counts the images with no tag in the review list.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
TAGS = (("modality", "modality"), ("body_part", "body_part"), ("protocol", "ada1100"))


def make_images(data: Path, folder: Path, seed: int) -> dict[str, dict[str, str]]:
    rng = random.Random(seed)
    truth: dict[str, dict[str, str]] = {}
    with (data / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):
        src = data / row["path"]
        if not src.exists():
            continue
        turn = rng.choice([0, 0, 90, 180, 270])
        with Image.open(src) as im:
            im.load()
            out = im.rotate(-turn, expand=True) if turn else im.copy()  # clockwise
        if out.mode not in ("L", "RGB", "I;16", "I"):
            out = out.convert("RGB")
        name = f"img{i:04d}.png"
        out.save(folder / name)
        truth[name] = {**row, "turn": str(turn)}
    return truth


def classify(folder: Path, radiographs: str | None) -> dict:
    fact = ["--radiographs", radiographs] if radiographs else []
    proc = subprocess.run(
        [sys.executable, "-m", "orthovision_cli", "classify", str(folder), "--format", "json", *fact],
        capture_output=True,
        text=True,
        check=False,
    )
    return json.loads(proc.stdout)


def source_of(path: str) -> str:
    return "/".join(Path(path).parts[:2])


def fact_of(modalities: Iterable[str]) -> str | None:
    """Film or digital as a person would say it once for these radiographs' labels (`RG` or
    `DX|CR`...): the most common (RG: film; DX or CR: digital); None when none is a radiograph."""
    votes: Counter[str] = Counter()
    for text in modalities:
        values = set(text.split("|"))
        if fact := "film" if "RG" in values else "digital" if values & {"DX", "CR"} else None:
            votes[fact] += 1
    return votes.most_common(1)[0][0] if votes else None


def source_facts(truth: dict[str, dict[str, str]]) -> dict[str, str]:
    """Each source's film or digital, from its radiographs' labels (`fact_of`)."""
    by_source: dict[str, list[str]] = {}
    for t in truth.values():
        by_source.setdefault(source_of(t["path"]), []).append(t["modality"])
    return {src: fact for src, mods in by_source.items() if (fact := fact_of(mods))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--radiographs", default=None, help="none, film, digital, source, or several comma-separated"
    )
    ap.add_argument("--loso", action="store_true", help="radiographs, leave-one-source-out (check_loso.py)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/ov-features"))
    ap.add_argument(
        "--shift",
        default=None,
        help="with --loso: the left-out source as another scanner would store it: "
        "gamma0.5, gamma2, dark, flat (washed out), equalize, invert (a negative) "
        "or small0.2 (a 20 %% export)",
    )
    a = ap.parse_args()
    if a.loso:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from check_loso import run_loso

        if a.radiographs not in (None, "none", "film", "digital", "source"):
            ap.error("--loso takes one --radiographs: none, film, digital or source")
        fact = None if a.radiographs == "none" else a.radiographs
        return run_loso(a.data, a.cache, a.json, fact, a.shift)
    wanted = [r.strip() for r in (a.radiographs or "none").split(",") if r.strip()]
    bad = set(wanted) - {"none", "film", "digital", "source"}
    if bad:
        ap.error(f"--radiographs takes none, film, digital, source (comma-separated), not {sorted(bad)}")
    with tempfile.TemporaryDirectory(prefix="orthovision-open-") as tmp:
        folder = Path(tmp)
        truth = make_images(a.data, folder, a.seed)
        # One classify run per fact needed; `source` picks per image from the film and digital runs.
        needed = {w for w in wanted if w != "source"} | ({"film", "digital"} if "source" in wanted else set())
        runs = {fact: classify(folder, None if fact == "none" else fact) for fact in sorted(needed)}
    reports = []
    for fact in wanted:
        if fact == "source":
            facts = source_facts(truth)
            pred = dict(runs["digital"])
            pred["images"] = [
                im
                for f in ("film", "digital")
                for im in runs[f]["images"]
                if (facts.get(source_of(truth[Path(im["path"]).name]["path"])) == "film") == (f == "film")
            ]
        else:
            pred = runs[fact]
        reports.append(score(pred, truth, fact))
    if a.json:
        print(json.dumps(reports if len(reports) > 1 else reports[0], indent=1))
        return 0
    for report in reports:
        n, review, without = report["images"], report["to_review"], report["without_review"]
        print(
            f"{n} images, {review} to review, {without} without review "
            f"({100 * without / max(1, n):.1f} %), radiographs: {report['radiographs']}"
        )
        for tag in ("modality", "body_part", "protocol", "orientation"):
            got, bad = report["written"].get(tag, 0), report["wrong"].get(tag, 0)
            print(f"  {tag:12} written without review {got:4}, wrong {bad}")
        for m in report["mistakes"]:
            print("  wrong:", *m)
    return 0


def score(pred: dict, truth: dict[str, dict[str, str]], fact: str) -> dict:
    """Files without review, labels written without review and those that are wrong."""
    threshold = pred["min_confidence"]
    written: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    review = 0
    written_total = 0
    mistakes: list[tuple[str, str, str, str]] = []
    for im in pred["images"]:
        name = Path(im["path"]).name
        t, labels = truth[name], im["labels"]
        review += bool(im.get("review"))
        written_total += not im.get("review") and not im.get("error")
        for tag, column in TAGS:
            lab = labels.get(tag)
            if not lab or lab.get("value") is None or not t[column] or lab["confidence"] < threshold:
                continue
            written[tag] += 1
            if lab["value"] not in t[column].split("|"):
                wrong[tag] += 1
                mistakes.append((t["path"], tag, lab["value"], t[column]))
        lab = labels.get("orientation")
        if t["upright"] == "yes" and lab and lab.get("value") is not None and lab["confidence"] >= threshold:
            written["orientation"] += 1
            if lab["value"] != str((360 - int(t["turn"])) % 360):
                wrong["orientation"] += 1
                mistakes.append((t["path"], "orientation", lab["value"], t["turn"]))
    return {
        "images": len(pred["images"]),
        "to_review": review,
        "without_review": written_total,
        "radiographs": fact,
        "written": dict(written),
        "wrong": dict(wrong),
        "mistakes": mistakes,
    }


if __name__ == "__main__":
    sys.exit(main())
