"""Which turn shows a picture upright, from a rotation head's answers on several looks.

A rotation head maps a picture's features to the clockwise correction it needs (0, 90, 180, 270).
One look can be fooled (a chest turned 90 and 270 degrees look alike to it); the four turns of the
same picture must agree: if the stored picture needs c, the picture turned by r more needs c - r.
`joint` sums the log-probabilities of each candidate over the looks and renormalises their mean,
weighted by SHARPNESS, so a single confident look cannot outvote three others.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TURNS = (0, 90, 180, 270)
# Weight of the summed log-probabilities: 1 would treat the four looks as independent evidence
# (they are not: the same picture); 0.25 their mean. Chosen by the leave-one-source-out
# calibration in docs/models.md.
SHARPNESS = 0.5


def joint(
    classes: list[str], looks: Sequence[np.ndarray], sharpness: float = SHARPNESS
) -> tuple[int, float, dict[str, float]]:
    """(correction, probability, all probabilities) from `looks[k]`: the head's probabilities on
    the stored picture turned clockwise by TURNS[k]."""
    index = {int(c): i for i, c in enumerate(classes)}
    score = np.zeros(len(TURNS))
    for ci, c in enumerate(TURNS):
        for r, p in zip(TURNS, looks, strict=False):
            score[ci] += np.log(max(float(p[index[(c - r) % 360]]), 1e-6))
    score *= sharpness
    e = np.exp(score - score.max())
    prob = e / e.sum()
    k = int(np.argmax(prob))
    return TURNS[k], float(prob[k]), {str(c): round(float(q), 4) for c, q in zip(TURNS, prob, strict=True)}
