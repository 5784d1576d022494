"""The one uncertainty policy, for every command: which labels are too uncertain to write without
a person's look, and what `--on-uncertain` does with them.

A label is uncertain when it names a value with less confidence than `--min-confidence`: that
value would be a guess written into DICOM. An unknown label (no source could tell, or none was
asked) is not uncertain: nothing is claimed for it and nothing is written for it (a modality left
unknown is written as OT, "other"). So `classify` lists for review exactly the tags that make
`convert` hold a file back; it used to list unknown tags too, which `convert` never held back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from ..errors import NeedsReview
from ..types import OnUncertain
from ..vocab.tags import TAGS, Tag
from .model import Label, Labels


def uncertain_labels(labels: Labels, min_confidence: float, tags: Iterable[Tag] = TAGS) -> list[Label]:
    """The known labels of `tags` (in TAGS order) below `min_confidence`."""
    wanted = set(tags)
    return [lab for lab in labels if lab.tag in wanted and lab.known and lab.confidence < min_confidence]


def uncertain_tags(labels: Labels, min_confidence: float, tags: Iterable[Tag] = TAGS) -> list[Tag]:
    return [lab.tag for lab in uncertain_labels(labels, min_confidence, tags)]


def apply_policy(
    labels: Labels, min_confidence: float, on_uncertain: OnUncertain | str, path: Path
) -> Labels:
    """--min-confidence / --on-uncertain: never write a guessed label silently.

    Raises NeedsReview (review, or skip with reason `uncertain-skipped`); with `convert` the
    uncertain tags are left unknown, their dropped values kept in the label's detail."""
    uncertain = uncertain_labels(labels, min_confidence)
    if not uncertain:
        return labels
    names = ", ".join(f"{lab.tag}={lab.value} ({lab.confidence:.2f} from {lab.source})" for lab in uncertain)
    if on_uncertain == OnUncertain.REVIEW:
        raise NeedsReview(f"not sure enough: {names}", path=path)
    if on_uncertain == OnUncertain.SKIP:
        raise NeedsReview(f"skipped, not sure enough: {names}", path=path, reason="uncertain-skipped")
    for lab in uncertain:
        labels = labels.with_label(replace(lab, value=None, detail={**lab.detail, "dropped": lab.value}))
    return labels
