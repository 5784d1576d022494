"""Every label value checked against the vocabulary before it is planned (issue 21): what a
classifier or a remote service said is put in the vocabulary's terms (a synonym to its defined
term) or the file fails naming the value and the nearest valid ones; a protocol that contradicts
the modality or body part a person gave (or the other way round) fails the file too. Values from
options, manifests and decisions are checked where they are read (`manifest.user_label`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..errors import LabelError
from ..vocab.check import canonical_label, contradiction
from .model import Labels

# Label sources that are a person's word (options, a manifest, a path template, the review page).
USER_SOURCES = frozenset({"option", "manifest", "path-template", "person"})


def vet_labels(labels: Labels, path: Path | str | None = None) -> Labels:
    out = labels
    for lab in labels:
        if not lab.known or lab.source in USER_SOURCES:
            continue
        try:
            value = canonical_label(lab.tag, str(lab.value))
        except LabelError as exc:
            raise LabelError(f"{lab.source} gave {exc.message}", path=path) from None
        if value != lab.value:
            out = out.with_label(replace(lab, value=value))
    # A contradiction is the file's reason when a person's word is part of it; the classifiers'
    # own contradictions are their consistency checks' (labels/local/consistency.py).
    if any(lab.known and lab.source in USER_SOURCES for lab in out):
        why = contradiction({lab.tag: lab.value for lab in out if lab.known})
        if why:
            raise LabelError(f"the labels contradict each other: {why}", path=path)
    return out
