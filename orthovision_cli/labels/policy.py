"""The one uncertainty policy, for every command: which labels are too uncertain to write without
a person's look, and what `--on-uncertain` does with them.

A label is uncertain when it names a value with less confidence than `--min-confidence`: that
value would be a guess written into DICOM. An unknown label (no source could tell, or none was
asked) is not uncertain: nothing is claimed for it and nothing is written for it (a modality left
unknown is written as OT, "other"). So `classify` lists for review exactly the tags that make
`convert` hold a file back; it used to list unknown tags too, which `convert` never held back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from ..errors import NeedsReview
from ..types import OnUncertain
from ..vocab.ada1100 import get_view, is_view
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
    names = "; ".join(describe(lab, min_confidence) for lab in uncertain)
    if on_uncertain == OnUncertain.REVIEW:
        raise NeedsReview(f"not sure enough: {names}", path=path)
    if on_uncertain == OnUncertain.SKIP:
        raise NeedsReview(f"skipped, not sure enough: {names}", path=path, reason="uncertain-skipped")
    for lab in uncertain:
        labels = labels.with_label(replace(lab, value=None, detail={**lab.detail, "dropped": lab.value}))
    return labels


def describe(lab: Label, min_confidence: float) -> str:
    """One uncertain label for a person: the value with its meaning, the confidence rounded DOWN
    (0.7996 is not "0.80" when 0.80 is needed), and why the source could not be surer."""
    meaning = lab.meaning
    if lab.tag == "protocol" and lab.value is not None and is_view(lab.value):
        meaning = get_view(lab.value).meaning
    shown = math.floor(lab.confidence * 100) / 100
    text = f"{lab.tag}={lab.value}" + (f" ({meaning})" if meaning and meaning != lab.value else "")
    text += f" at {shown:.2f} from {lab.source}, {min_confidence:.2f} needed"
    note = lab.detail.get("note") if isinstance(lab.detail, dict) else None
    return text + (f"; {note}" if isinstance(note, str) and note else "")
