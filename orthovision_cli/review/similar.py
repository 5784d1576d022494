"""Which files awaiting review are of the same kind, and which one to ask about next.

Two files are look-alikes when the tool holds them to be of one kind on every count it has:
the same proposed value for all four tags (the models' proposals, whatever their confidence),
the same source folder or the same camera/scanner (EXIF/TIFF Make and Model), and near in the
feature space of the pack's MobileNetV2 (cosine similarity of the pooled features at least
`NEAR`). A file whose features are not known yet is nobody's look-alike: nearness is never
assumed. The relation is symmetric, so "the files this answer would settle" are the same from
either side.

`settle_order` is a greedy cover: the undecided file with the most undecided look-alikes first
(its answer, spread, settles them all), then the next among those left; one file per group of
similar images, the largest group first, file name order among equals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..labels.model import TAGS

# Cosine similarity of MobileNetV2 pooled features (ReLU6 outputs: non-negative, so unrelated
# pictures already score ~0.5). 0.85 keeps to near-duplicates of a view on the open data:
# docs/review.md, "Decisions that spread", gives the measurement (bench/bench_review_spread.py).
NEAR = 0.85


@dataclass
class Profile:
    """What the tool holds about one file awaiting review."""

    id: int
    name: str  # path below the input root: the order among equals
    proposed: tuple[str, ...]  # the proposed value of each tag in TAGS order, "" unknown
    folder: str
    device: str = ""  # "Make Model" of the camera or scanner, "" unknown
    features: np.ndarray | None = None  # L2-normalised; None: not computed (yet)


def proposed_values(labels: Mapping[str, object]) -> tuple[str, ...]:
    """The proposed value per tag from a review item's labels (`Label.as_dict()` or None)."""
    out = []
    for tag in TAGS:
        lab = labels.get(tag)
        value = lab.get("value") if isinstance(lab, dict) else None
        out.append(str(value) if value else "")
    return tuple(out)


def normalised(features: np.ndarray) -> np.ndarray:
    v = np.asarray(features, np.float32).ravel()
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def same_kind(a: Profile, b: Profile) -> bool:
    """Everything but nearness: same proposals, same folder or same device."""
    return a.proposed == b.proposed and (a.folder == b.folder or (bool(a.device) and a.device == b.device))


def similarity_matrix(profiles: Sequence[Profile]) -> np.ndarray:
    """Cosine similarity of every pair; -1 where either has no features."""
    n = len(profiles)
    sims = np.full((n, n), -1.0, np.float32)
    have = [i for i, p in enumerate(profiles) if p.features is not None]
    if have:
        m = np.stack([profiles[i].features for i in have])  # type: ignore[misc]
        s = m @ m.T
        idx = np.array(have)
        sims[np.ix_(idx, idx)] = s
    return sims


def neighbours(profiles: Sequence[Profile], near: float = NEAR) -> dict[int, list[int]]:
    """id -> look-alike ids, the nearest first."""
    sims = similarity_matrix(profiles)
    out: dict[int, list[int]] = {}
    for i, p in enumerate(profiles):
        found = [
            (float(sims[i, j]), q.id)
            for j, q in enumerate(profiles)
            if j != i and sims[i, j] >= near and same_kind(p, q)
        ]
        out[p.id] = [qid for _, qid in sorted(found, key=lambda x: (-x[0], x[1]))]
    return out


def look_alikes(
    profiles: Sequence[Profile], of: int, exclude: Iterable[int] = (), near: float = NEAR
) -> list[int]:
    """The look-alikes of file `of` (an id), the nearest first, without those in `exclude`."""
    by_id = {p.id: p for p in profiles}
    me = by_id.get(of)
    if me is None or me.features is None:
        return []
    skip = set(exclude) | {of}
    found = []
    for p in profiles:
        if p.id in skip or p.features is None or not same_kind(me, p):
            continue
        s = float(np.dot(me.features, p.features))
        if s >= near:
            found.append((s, p.id))
    return [pid for _, pid in sorted(found, key=lambda x: (-x[0], x[1]))]


def settle_order(
    profiles: Sequence[Profile], undecided: Iterable[int], near: float = NEAR
) -> list[tuple[int, list[int]]]:
    """[(file to ask, the undecided look-alikes its answer would settle)], one per group."""
    todo = set(undecided)
    pool = [p for p in profiles if p.id in todo]
    near_of = neighbours(pool, near)
    name = {p.id: p.name for p in pool}
    order: list[tuple[int, list[int]]] = []
    left = set(todo) & set(name)
    while left:
        best = min(left, key=lambda i: (-sum(1 for j in near_of[i] if j in left), name[i], i))
        group = [j for j in near_of[best] if j in left]
        order.append((best, group))
        left -= {best, *group}
    return order
