"""Fuse labels from several sources into one `Labels`.

Sources are given in priority order (user options and manifest first, then EXIF, then models).
For each tag the first source that knows it wins when its confidence is 1.0 (a person said so);
otherwise the most confident known label wins. The winner keeps its own `source`, and the
losers are listed in its `detail["alternatives"]` so a report shows where a label came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from .model import TAGS, Label, Labels


def fuse(candidates: Sequence[Labels]) -> Labels:
    out = Labels()
    for tag in TAGS:
        known: list[Label] = [
            lab for labels in candidates if (lab := labels.get(tag)) is not None and lab.known
        ]
        if not known:
            # Keep an unknown with its (low) confidence if any source reported one.
            unknown = [lab for labels in candidates if (lab := labels.get(tag)) is not None]
            if unknown:
                out = out.with_label(unknown[0])
            continue
        authoritative = [lab for lab in known if lab.confidence >= 1.0]
        winner = authoritative[0] if authoritative else max(known, key=lambda lab: lab.confidence)
        others = [
            {"value": lab.value, "confidence": round(lab.confidence, 4), "source": lab.source}
            for lab in known
            if lab is not winner
        ]
        if others:
            detail = dict(winner.detail)
            detail["alternatives"] = others
            winner = replace(winner, detail=detail)
        out = out.with_label(winner)
    return out
