# SPDX-License-Identifier: Apache-2.0
"""Measure the default pack's face orientation on the shared data's 24 frontal photographs,
each stored turned by 0, 90, 180 and 270 degrees (96 images the detector never saw).

    python models/tools/measure_orientation.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from orthovision_cli.inputs.source import SourceImage  # noqa: E402
from orthovision_cli.labels.local import load_pack  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args()
    faces = sorted((args.data / "photos" / "faces_london").rglob("*.jpg"))
    clf = load_pack()
    total = correct = accepted = accepted_ok = 0
    with tempfile.TemporaryDirectory() as tmp:
        images, truth = [], []
        for p in faces:
            for turn in (0, 90, 180, 270):
                q = Path(tmp) / f"{p.stem}_{turn}.jpg"
                Image.open(p).rotate(turn, expand=True).save(q, quality=90)
                images.append(SourceImage(q, rel=q.name))
                truth.append(str(turn))
        for labels, t in zip(clf.classify_many(images), truth, strict=True):
            lab = labels.orientation
            ok = lab is not None and lab.value == t
            total += 1
            correct += ok
            if lab is not None and lab.known and lab.confidence >= 0.8:
                accepted += 1
                accepted_ok += ok
    print(
        f"orientation: {correct}/{total} correct; at confidence >= 0.8: {accepted} accepted, "
        f"{accepted_ok} correct"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
