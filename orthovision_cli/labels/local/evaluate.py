"""`orthovision evaluate`: accuracy per tag, confusion matrix and calibration on a labelled folder.

Same layout as training (`<tag>/<value>/**/<image>`). An unknown prediction counts as wrong in
`accuracy` and is reported apart as an abstention; `accepted_*` is what `convert` would write
with `--min-confidence` (labels at or above it). Calibration: per confidence bin, the mean
confidence against the share correct, and the expected calibration error (ECE) over them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...defaults import DEFAULT_MIN_CONFIDENCE
from ...inputs.source import SourceImage
from ..model import TAGS, Labels, Orientation, Tag
from .classifier import LocalClassifier
from .train import scan_labelled

UNKNOWN = "(unknown)"
BINS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0001)
BATCH = 16


def same_value(tag: Tag, truth: str, predicted: str | None) -> bool:
    if predicted is None:
        return False
    if tag == "orientation":
        try:
            return Orientation.parse(truth) == Orientation.parse(predicted)
        except ValueError:
            return False
    return truth.strip().upper() == predicted.strip().upper()


@dataclass
class TagResult:
    tag: Tag
    rows: list[tuple[str, str, str | None, float, str]] = field(default_factory=list)
    # (image, truth, predicted or None, confidence, source)

    def summary(self, min_confidence: float) -> dict[str, Any]:
        n = len(self.rows)
        answered = [r for r in self.rows if r[2] is not None]
        correct = [r for r in self.rows if same_value(self.tag, r[1], r[2])]
        accepted = [r for r in answered if r[3] >= min_confidence]
        accepted_ok = [r for r in accepted if same_value(self.tag, r[1], r[2])]
        confusion: dict[str, dict[str, int]] = {}
        for _img, truth, pred, _c, _s in self.rows:
            row = confusion.setdefault(truth, {})
            key = pred if pred is not None else UNKNOWN
            row[key] = row.get(key, 0) + 1
        calibration = []
        ece = 0.0
        for lo, hi in itertools.pairwise(BINS):
            inside = [r for r in answered if lo <= r[3] < hi]
            if not inside:
                continue
            mean_c = sum(r[3] for r in inside) / len(inside)
            acc = sum(same_value(self.tag, r[1], r[2]) for r in inside) / len(inside)
            ece += len(inside) / max(1, len(answered)) * abs(mean_c - acc)
            calibration.append(
                {
                    "bin": f"[{lo:.2f}, {min(hi, 1.0):.2f}{']' if hi > 1 else ')'}",
                    "count": len(inside),
                    "mean_confidence": round(mean_c, 4),
                    "accuracy": round(acc, 4),
                }
            )

        def ratio(a: int, b: int) -> float | None:
            return round(a / b, 4) if b else None

        return {
            "tag": self.tag,
            "images": n,
            "correct": len(correct),
            "accuracy": ratio(len(correct), n),
            "answered": len(answered),
            "abstained": n - len(answered),
            "accuracy_when_answered": ratio(len(correct), len(answered)),
            "min_confidence": min_confidence,
            "accepted": len(accepted),
            "accepted_correct": len(accepted_ok),
            "accepted_accuracy": ratio(len(accepted_ok), len(accepted)),
            "confusion": confusion,
            "calibration": calibration,
            "ece": round(ece, 4) if answered else None,
        }


@dataclass
class EvalReport:
    pack: str
    folder: str
    tags: list[TagResult]
    min_confidence: float
    errors: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "pack": self.pack,
            "folder": self.folder,
            "tags": {t.tag: t.summary(self.min_confidence) for t in self.tags},
            "errors": self.errors,
            "predictions": [
                {
                    "tag": t.tag,
                    "image": r[0],
                    "truth": r[1],
                    "predicted": r[2],
                    "confidence": round(r[3], 4),
                    "source": r[4],
                }
                for t in self.tags
                for r in t.rows
            ],
        }


def evaluate(
    folder: Path,
    clf: LocalClassifier,
    *,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    data = scan_labelled(folder)
    paths = sorted({p for items in data.values() for p, _ in items})
    labels: dict[Path, Labels] = {}
    errors: list[str] = []
    for i in range(0, len(paths), BATCH):
        chunk = paths[i : i + BATCH]
        # Only the file name: the folders are the truth and must not leak in as name hints.
        images = [SourceImage(p, rel=p.name) for p in chunk]
        for p, got in zip(chunk, clf.classify_many(images), strict=True):
            labels[p] = got
            err = next((x.detail.get("error") for x in got if x.detail.get("error")), None)
            if err:
                errors.append(f"{p}: {err}")
        if progress:
            progress(min(i + BATCH, len(paths)), len(paths))
    results: list[TagResult] = []
    for tag in TAGS:
        if tag not in data:
            continue
        tr = TagResult(tag)
        for p, truth in data[tag]:
            lab = labels[p].get(tag)
            pred = lab.value if lab is not None and lab.known else None
            conf = lab.confidence if lab is not None and lab.known else 0.0
            src = lab.source if lab is not None else ""
            tr.rows.append((p.relative_to(folder).as_posix(), truth, pred, conf, src))
        results.append(tr)
    return EvalReport(clf.pack.name, str(folder), results, min_confidence, errors)
