# SPDX-License-Identifier: Apache-2.0
"""Measure the keypoint yaw ratio that a face turned by a known angle gives (constructed geometry).

    python models/tools/measure_pose.py [--data ../shared/data]

No openly licensed profile or three-quarter photograph exists, so the pose thresholds of
`labels.local.pose` come from geometry: the 3D FaceMesh landmarks of every open frontal face are
turned about the vertical axis by 0-75 degrees and projected orthographically; the ratio the
classifier uses (nose tip offset from the mid-point of the two tragions, in tragion spans) is
measured on the projection, with the face contour points at tragion height (FaceMesh 234 and 454)
standing in for BlazeFace's tragion keypoints. Prints mean, min and max per angle, and checks that
`pose.degrees` maps each mean ratio back to its angle and that every frontal face reads frontal.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PACK = HERE.parent
sys.path.insert(0, str(PACK.parent))

from orthovision_cli.inputs.source import SourceImage  # noqa: E402
from orthovision_cli.labels.local import pose  # noqa: E402
from orthovision_cli.labels.local.faces import FaceModels  # noqa: E402
from orthovision_cli.labels.local.runner import OnnxModel  # noqa: E402

NOSE_TIP = 1
CONTOUR = (234, 454)
ANGLES = (0.0, 15.0, 22.5, 30.0, 45.0, 60.0, 67.5, 75.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=PACK.parent.parent / "shared" / "data")
    args = ap.parse_args(argv)
    models = json.loads((PACK / "manifest.json").read_text(encoding="utf-8"))["models"]
    det, mesh = models["face_detector"], models["face_mesh"]
    faces = FaceModels(
        OnnxModel(PACK / det["file"], det["input"]), det, OnnxModel(PACK / mesh["file"], mesh["input"]), mesh
    )
    with (args.data / "labels.csv").open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if "/faces_" in r["path"]]
    ratios: list[list[float]] = []
    real: list[float] = []
    for r in rows:
        rgb = SourceImage(args.data / r["path"]).preview(384)
        face = faces.detect(rgb)
        real.append(face.yaw)
        pts, _ = faces.landmarks(rgb, face)
        p = pts - pts.mean(axis=0)
        row = []
        for deg in ANGLES:
            t = math.radians(deg)
            x = p[:, 0] * math.cos(t) + p[:, 2] * math.sin(t)
            a, b = x[CONTOUR[0]], x[CONTOUR[1]]
            row.append(abs(float((x[NOSE_TIP] - (a + b) / 2) / (abs(b - a) + 1e-6))))
        ratios.append(row)
    arr = np.array(ratios)
    print(f"{len(rows)} frontal faces; |yaw ratio| per angle (mean, min, max):")
    for k, deg in enumerate(ANGLES):
        col = arr[:, k]
        back = pose.degrees(float(col.mean()))
        print(f"  {deg:5.1f} deg: {col.mean():.3f} {col.min():.3f} {col.max():.3f}  -> reads {back:.1f} deg")
    worst = max(abs(y) for y in real)
    print(
        f"BlazeFace |yaw ratio| on the upright photographs: max {worst:.3f} = {pose.degrees(worst):.1f} deg"
    )
    frontal = sum(pose.pose(y)[0] == "frontal" for y in real)
    print(f"frontal: {frontal}/{len(real)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
