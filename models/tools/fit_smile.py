# SPDX-License-Identifier: Apache-2.0
"""Fit the default pack's smile head (rest vs smile) and measure it leave-one-person-out.

    python models/tools/fit_smile.py [--data ../shared/data]

Inputs (`labels.local.faces.mouth_features`, on the same 384 px preview and FaceMesh crop the
classifier uses): mouth width / eye span, the area between the lips and the teeth shown between
them (pixels brighter and greyer than the lips), both per squared mouth width. Faces: the
London set (12 people at rest and smiling, CC BY 4.0) and the Canada 2003 set (40 people at
rest, CC BY 4.0). Each person is left out in turn (the London pairs leave together), a head
fitted on everyone else predicts the left-out pictures; the figures go into the manifest's
`heads[].measured` and are printed, then the head is fitted on every face.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
PACK = HERE.parent
REPO = PACK.parent
sys.path.insert(0, str(REPO))

from orthovision_cli.defaults import DEFAULT_MIN_CONFIDENCE  # noqa: E402
from orthovision_cli.inputs.source import SourceImage  # noqa: E402
from orthovision_cli.labels.local.faces import FaceModels, mouth_features  # noqa: E402
from orthovision_cli.labels.local.feature_heads import join_smile  # noqa: E402
from orthovision_cli.labels.local.heads import fit_head, temper  # noqa: E402
from orthovision_cli.labels.local.packs import file_sha256  # noqa: E402
from orthovision_cli.labels.local.runner import OnnxModel  # noqa: E402
from orthovision_cli.labels.local.work import PREVIEW_SIDE, SURE_FACE  # noqa: E402

L2 = 0.1
ITERATIONS = 500
FEATURES = "mouth width / eye span, area between the lips / width^2, teeth shown / width^2"


def faces_of(data: Path) -> list[tuple[str, str, str]]:
    """(path, rest | smile, person) of every open frontal face."""
    with (data / "labels.csv").open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["path"].startswith("photos/faces_")]
    out = []
    for r in rows:
        p = r["path"]
        label = "smile" if "/smile/" in p else "rest"
        person = Path(p).name.split("_")[0] if "faces_london" in p else Path(p).stem
        out.append((p, label, f"{Path(p).parent.parent.name}:{person}"))
    return out


def measure(x: np.ndarray, y: list[str], groups: list[str]) -> tuple[dict[str, Any], np.ndarray]:
    p_smile = np.zeros(len(y))
    for g in sorted(set(groups)):
        test = np.array([gg == g for gg in groups])
        head = fit_head(
            x[~test], [v for v, t in zip(y, test, strict=True) if not t], l2=L2, iterations=ITERATIONS
        )
        p_smile[test] = head.predict_proba(x[test])[:, head.classes.index("smile")]
    pred = ["smile" if p >= 0.5 else "rest" for p in p_smile]
    conf = np.maximum(p_smile, 1 - p_smile)
    right = np.array([a == b for a, b in zip(pred, y, strict=True)])
    out: dict[str, Any] = {
        "method": "leave-one-person-out (a London person's rest and smile pictures leave together)",
        "images": len(y),
        "correct": int(right.sum()),
        "accuracy": round(float(right.mean()), 4),
    }
    for t in (0.8, 0.9):
        sel = conf >= t
        out[f"at_{t}"] = {"accepted": int(sel.sum()), "right": int(right[sel].sum())}
    out["per_class"] = {c: f"{int(right[[v == c for v in y]].sum())}/{y.count(c)}" for c in ("rest", "smile")}
    return out, p_smile


def choose_temperature(p_smile: np.ndarray, y: list[str]) -> float:
    """The smallest of 1, 1.25, 1.5, ... that leaves every left-out mistake below 0.8 (the
    default review threshold): the head is overconfident on a faint smile."""
    logit = np.log(np.clip(p_smile, 1e-9, 1 - 1e-9) / np.clip(1 - p_smile, 1e-9, 1))
    wrong = np.array([(p >= 0.5) != (v == "smile") for p, v in zip(p_smile, y, strict=True)])
    t = 1.0
    while t < 4.0:
        conf = 1 / (1 + np.exp(-np.abs(logit[wrong]) / t))
        if not wrong.any() or float(conf.max()) < 0.8:
            break
        t += 0.25
    return t


def measure_joined(
    p_smile: np.ndarray, votes: list[float | None], y: list[str], groups: list[str], paths: list[str]
) -> dict[str, Any]:
    """The classifier's rest-vs-smile decision, leave-one-person-out end to end: the smile head
    fitted without the person (`p_smile`), tempered by a temperature chosen without the person
    too, joined with the expression model's vote (fitted by nobody here) as `join_smile` joins
    them. Counts what would be written without review (a sure frontal face: 0.95 times the
    joined P at least 0.8)."""
    joined = np.zeros(len(y))
    for g in sorted(set(groups)):
        test = np.array([gg == g for gg in groups])
        t = choose_temperature(p_smile[~test], [v for v, k in zip(y, test, strict=True) if not k])
        for i in np.flatnonzero(test):
            soft = float(temper(np.array([1 - p_smile[i], p_smile[i]]), t)[1])
            joined[i] = join_smile(soft, votes[i])
    right = np.array([(p >= 0.5) == (v == "smile") for p, v in zip(joined, y, strict=True)])
    # What the classifier writes without review: a sure face times the view's P.
    written = SURE_FACE * np.maximum(joined, 1 - joined) >= DEFAULT_MIN_CONFIDENCE
    for i in np.flatnonzero(~right | ~written):
        state = ("right" if right[i] else "WRONG") + (", written" if written[i] else ", to review")
        print(f"joined: {paths[i]} ({y[i]}) P(smile) {joined[i]:.2f}: {state}")
    return {
        "method": "smile head leave-one-person-out (temperature chosen without the person) joined with "
        "the expression model's vote as the classifier joins them",
        "correct": f"{int(right.sum())}/{len(y)}",
        "written_right": int((right & written).sum()),
        "written_wrong": int((~right & written).sum()),
        "to_review": int((~written).sum()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args(argv)
    manifest_path = PACK / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    det, mesh = manifest["models"]["face_detector"], manifest["models"]["face_mesh"]
    expr = manifest["models"]["face_expression"]
    faces = FaceModels(
        OnnxModel(PACK / det["file"], det["input"]),
        det,
        OnnxModel(PACK / mesh["file"], mesh["input"]),
        mesh,
        OnnxModel(PACK / expr["file"], expr["input"]),
        expr,
    )
    rows = faces_of(args.data)
    feats = []
    votes: list[float | None] = []
    for path, _, _ in rows:
        rgb = SourceImage(args.data / path, rel=path).preview(PREVIEW_SIDE)
        face = faces.detect(rgb)
        pts, _ = faces.landmarks(rgb, face)
        feats.append(mouth_features(faces.crop(rgb, face), pts))
        votes.append(faces.smile_vote(rgb, face))
    x = np.stack(feats)
    y = [r[1] for r in rows]
    groups = [r[2] for r in rows]
    measured, p_smile = measure(x, y, groups)
    london = np.array(["faces_london" in r[0] for r in rows])
    right = np.array([(p >= 0.5) == (v == "smile") for p, v in zip(p_smile, y, strict=True)])
    measured["london_pairs"] = f"{int(right[london].sum())}/{int(london.sum())}"
    measured["canada_rest"] = f"{int(right[~london].sum())}/{int((~london).sum())}"
    for (path, label, _), p in zip(rows, p_smile, strict=True):
        if (p >= 0.5) != (label == "smile"):
            print(f"wrong: {path} ({label}) P(smile) {p:.2f}")
    temperature = choose_temperature(p_smile, y)
    measured["temperature"] = temperature
    soft = 1 / (1 + np.exp(-np.log(np.clip(p_smile, 1e-9, 1) / np.clip(1 - p_smile, 1e-9, 1)) / temperature))
    conf = np.maximum(soft, 1 - soft)
    measured["at_0.8_tempered"] = {
        "accepted": int((conf >= 0.8).sum()),
        "right": int(right[conf >= 0.8].sum()),
    }
    measured["joined"] = measure_joined(p_smile, votes, y, groups, [r[0] for r in rows])
    print(json.dumps(measured))
    head = fit_head(x, y, l2=L2, iterations=ITERATIONS)
    head.save(PACK / "heads" / "smile.npz")
    for spec in manifest["heads"]:
        if spec.get("role") == "smile":
            spec.update(
                {
                    "input": "mouth",
                    "labels": "rest -> EV15 (full face, lips relaxed); smile -> EV19 (full face, "
                    f"full smile); features: {FEATURES}",
                    "temperature": temperature,
                    "sha256": file_sha256(PACK / "heads" / "smile.npz"),
                    "classes": head.classes,
                    "trained_on": "Face Research Lab London Set (12 people at rest and smiling) and "
                    "Canada 2003 set (40 at rest), CC BY 4.0",
                    "training_samples": len(y),
                    "measured": measured,
                }
            )
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
