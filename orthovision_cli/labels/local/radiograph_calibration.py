"""Fitting the radiograph kind head's calibration on predictions for sources it did not see.

A record is one left-out prediction: the true kind, the head's classes and probabilities, and
the geometry of the upright picture. `fit_calibration` chooses the temperatures
(`radiograph.Calibration`) that `radiograph_labels` applies: per kind the head names (judged on
what the common temperature calls that kind), the temperature with the most right-and-sure
labels among those whose wrong-and-sure labels exceed the fewest any temperature reaches by at
most 1 % of the labels. `models/tools/fit_heads.py` fits it on all left-out predictions and
measures it nested (each source's predictions calibrated without that source).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from . import radiograph
from .radiograph_geometry import Geometry

TEMPERATURES = (0.25, 0.35, 0.5, 0.7, 1.0, 1.25, 1.5, 2.0, 3.0)
MAX_WRONG_SURE = 0.01  # of the labels counted
MIN_KIND_RECORDS = 8  # a kind named fewer times takes the common temperature
THRESHOLD = 0.8  # the default review threshold (defaults.DEFAULT_MIN_CONFIDENCE)


@dataclass(frozen=True)
class Record:
    truth: str  # the true kind
    classes: list[str]
    probs: np.ndarray
    geometry: Geometry


def tags(rec: Record, calibration: radiograph.Calibration) -> tuple[str, list[tuple[str, bool, float]]]:
    """(decided kind, [(tag, right, confidence)]) as the classifier makes them: modality and
    body part as sure as all the kinds that share them, the protocol as the decision."""
    d = radiograph.decide(rec.classes, rec.probs, rec.geometry, calibration)
    truth, got = radiograph.KINDS[rec.truth], radiograph.KINDS[d.kind]
    out = [
        (
            "modality",
            got.modality == truth.modality,
            d.capped(radiograph.share(d.probabilities, "modality", got.modality)),
        ),
        (
            "body_part",
            got.body_part == truth.body_part,
            d.capped(radiograph.share(d.probabilities, "body_part", got.body_part)),
        ),
    ]
    if truth.protocol or got.protocol:
        out.append(("protocol", got.protocol == truth.protocol, d.protocol_confidence))
    return d.kind, out


def sure_counts(rows: list[list[tuple[str, bool, float]]]) -> tuple[int, int, int]:
    """(labels counted, right and sure, wrong and sure)."""
    n = right = wrong = 0
    for row in rows:
        for _tag, ok, conf in row:
            n += 1
            right += ok and conf >= THRESHOLD
            wrong += (not ok) and conf >= THRESHOLD
    return n, right, wrong


def _best(records: list[Record], kind: str | None) -> float:
    """The temperature with the most right-and-sure labels among those whose wrong-and-sure
    labels exceed the fewest any temperature reaches by at most 1 % of the labels (a head sure
    of a wrong kind at 0.99 stays so at any temperature: that error is not the temperature's
    to fix, and must not soften every other answer); ties go to the softer one."""
    counts = []
    for t in TEMPERATURES:
        calib = radiograph.Calibration(t)
        rows = []
        for r in records:
            k, row = tags(r, calib)
            if kind is None or k == kind:
                rows.append(row)
        counts.append((t, *sure_counts(rows)))
    least = min(wrong for _t, _n, _right, wrong in counts)
    choice, score = TEMPERATURES[-1], -1
    for t, n, right, wrong in counts:
        if wrong <= least + MAX_WRONG_SURE * n and right > score:
            choice, score = t, right
    return choice


def fit_calibration(records: list[Record]) -> radiograph.Calibration:
    common = _best(records, None)
    base = radiograph.Calibration(common)
    named = [tags(r, base)[0] for r in records]
    per_kind: dict[str, float] = {}
    for kind, n in sorted(Counter(named).items()):
        if n < MIN_KIND_RECORDS:
            continue
        mine = [r for r, k in zip(records, named, strict=True) if k == kind]
        per_kind[kind] = _best(mine, kind)
    return radiograph.Calibration(common, tuple(sorted(per_kind.items())))


def as_spec(calibration: radiograph.Calibration) -> dict[str, object]:
    """The manifest entries of a calibration (read back by `Calibration.from_spec`)."""
    return {"temperature": calibration.temperature, "kind_temperatures": dict(calibration.per_kind)}
