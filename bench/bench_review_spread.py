"""Decisions that spread: how often the review page's look-alikes really are of one kind.

Not a speed benchmark. On the open images with ground truth (../shared/data/labels.csv), each
image is classified with the embedded pack (file name only, no folder hints), its features made
as the review page makes them, and its look-alikes found as the page finds them (same proposed
labels, same source folder or camera, cosine >= NEAR). For every look-alike pair it counts
whether the truth agrees on modality, view/protocol and body part: a pair that disagrees is one
the person must untick, or a wrong label would be spread. Then the questions the page would ask
(`settle_order`) for the images a convert would send to review.

    python bench/bench_review_spread.py [DATA]   # DATA: a folder with labels.csv
"""

from __future__ import annotations

import csv
import sys
import time
from itertools import combinations
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orthovision_cli.inputs.source import SourceImage, content_hash  # noqa: E402
from orthovision_cli.labels.local import load_pack  # noqa: E402
from orthovision_cli.labels.policy import uncertain_tags  # noqa: E402
from orthovision_cli.review.features import FeatureStore  # noqa: E402
from orthovision_cli.review.items import ReviewItem  # noqa: E402
from orthovision_cli.review.similar import NEAR, Profile, look_alikes, settle_order  # noqa: E402
from orthovision_cli.review.spread import profiles  # noqa: E402

TRUTH_TAGS = ("modality", "protocol", "body_part")


def truth(row: dict[str, str]) -> dict[str, set[str]]:
    view = row.get("ada1100") or row.get("view") or ""
    return {
        "modality": set(filter(None, row["modality"].split("|"))),
        "protocol": set(filter(None, view.split("|"))),
        "body_part": set(filter(None, row["body_part"].split("|"))),
    }


def agrees(a: set[str], b: set[str]) -> bool:
    return not a or not b or bool(a & b)  # an unknown truth cannot disagree


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    rows = [r for r in csv.DictReader((data / "labels.csv").open()) if (data / r["path"]).is_file()]
    clf = load_pack(None)
    items, truths, review = [], [], set()
    t0 = time.perf_counter()
    for i, r in enumerate(rows):
        path = data / r["path"]
        labels = clf.classify(SourceImage(path, path.name))
        items.append(ReviewItem(i, r["path"], r["path"], "", "", content_hash(path), labels.as_dict()))
        items[-1].input = str(path)
        truths.append(truth(r))
        if uncertain_tags(labels, 0.8):
            review.add(i)
    store = FeatureStore(None)
    store.compute(items)
    ps = profiles(items, store)
    print(f"{len(items)} images, {len(review)} would wait for review; {time.perf_counter() - t0:.0f} s")
    print(f"look-alike rule: same proposals, same folder or camera, cosine >= {NEAR}")
    report(ps, truths, review)
    # The open data's folders are sorted by kind, which helps; an archive that mixes kinds in
    # one folder has only the proposals and the features: all images in one folder.
    print("the same, every image in one folder (proposals and features alone):")
    for p in ps:
        p.folder = "/"
    report(ps, truths, review)


def report(ps: list[Profile], truths: list[dict[str, set[str]]], review: set[int]) -> None:
    for name, ids in (("all images", set(range(len(ps)))), ("awaiting review", review)):
        pairs = [(i, j) for i, j in combinations(sorted(ids), 2) if j in look_alikes(ps, i)]
        bad = {t: sum(not agrees(truths[i][t], truths[j][t]) for i, j in pairs) for t in TRUTH_TAGS}
        wrong_any = sum(any(not agrees(truths[i][t], truths[j][t]) for t in TRUTH_TAGS) for i, j in pairs)
        having = sum(1 for i in ids if any(j in ids for j in look_alikes(ps, i)))
        print(
            f"{name}: {len(pairs)} look-alike pairs, {len(pairs) - wrong_any} agree on every tag "
            f"({100 * (len(pairs) - wrong_any) / max(1, len(pairs)):.1f} %); disagree: "
            + ", ".join(f"{t} {n}" for t, n in bad.items())
            + f"; {having} of {len(ids)} images have a look-alike"
        )
    order = settle_order(ps, review)
    settled = sum(len(g) for _, g in order)
    print(
        f"questions for the {len(review)} awaiting review: {len(order)} "
        f"(the first {sum(1 for _, g in order if g)} settle {settled} others when spread)"
    )


if __name__ == "__main__":
    main()
