"""The low-confidence policy: which tags are too uncertain to write without a person's look."""

from __future__ import annotations

from collections.abc import Iterable

from ...defaults import DEFAULT_MIN_CONFIDENCE
from ..model import TAGS, Labels, Tag

__all__ = ["DEFAULT_MIN_CONFIDENCE", "ON_UNCERTAIN", "needs_review"]
ON_UNCERTAIN = ("review", "convert", "skip")


def needs_review(labels: Labels, min_confidence: float, tags: Iterable[Tag] = TAGS) -> list[str]:
    """Tags (in TAGS order) whose label is unknown or below `min_confidence`.

    An unknown tag counts: "review" must not let a file through with a guessed label. Pass `tags`
    to check only the tags the output needs.
    """
    wanted = set(tags)
    out: list[str] = []
    for tag in TAGS:
        if tag not in wanted:
            continue
        lab = labels.get(tag)
        if lab is None or not lab.known or lab.confidence < min_confidence:
            out.append(tag)
    return out
