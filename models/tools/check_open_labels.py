# SPDX-License-Identifier: Apache-2.0
"""End to end on the open data: what `orthovision classify` writes without review, against
labels.csv, on every labelled image under neutral names, two in five left as stored and the
others turned a random quarter turn (lossless PNG copies, EXIF dropped).

    python models/tools/check_open_labels.py [--data ../shared/data] [--seed 7] [--json]
    python models/tools/check_open_labels.py --loso [--data ../shared/data] [--cache DIR] [--json]

`--loso` (models/tools/check_loso.py) is the honest figure for radiographs: for each source in
turn, the radiograph heads and their calibration are fitted without it, and `classify` runs on
its films at 0, 90, 180 and 270 degrees; per kind it reports right beside right-and-sure.

These images are among those the pack was fitted on: the figures say whether a label written
without review contradicts the open labels (a dishonest label), not how well the pack
generalises (leave-one-source-out: models/tools/fit_heads.py). A tag counts only where
labels.csv gives a value (`|` separates accepted alternatives); the orientation counts only for
images labelled upright, as the clockwise turn that undoes the one applied.
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--loso", action="store_true", help="radiographs, leave-one-source-out (check_loso.py)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/ov-features"))
    a = ap.parse_args()
    if a.loso:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from check_loso import run_loso

        return run_loso(a.data, a.cache, a.json)
    with tempfile.TemporaryDirectory(prefix="orthovision-open-") as tmp:
        folder = Path(tmp)
        truth = make_images(a.data, folder, a.seed)
        proc = subprocess.run(
            [sys.executable, "-m", "orthovision_cli", "classify", str(folder), "--format", "json"],
            capture_output=True,
            text=True,
            check=False,
        )
        pred = json.loads(proc.stdout)
    threshold = pred["min_confidence"]
    written: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    review = 0
    mistakes: list[tuple[str, str, str, str]] = []
    for im in pred["images"]:
        name = Path(im["path"]).name
        t, labels = truth[name], im["labels"]
        review += bool(im.get("review"))
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
    report = {
        "images": len(pred["images"]),
        "to_review": review,
        "written": dict(written),
        "wrong": dict(wrong),
        "mistakes": mistakes,
    }
    if a.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{report['images']} images, {review} to review")
        for tag in ("modality", "body_part", "protocol", "orientation"):
            print(f"  {tag:12} written without review {written[tag]:4}, wrong {wrong[tag]}")
        for m in mistakes:
            print("  wrong:", *m)
    return 0


if __name__ == "__main__":
    sys.exit(main())
