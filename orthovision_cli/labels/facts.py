"""Batch facts: what a person knows once for a whole batch (or a source folder) and the pixels
cannot tell, applied to every file it covers.

`radiographs` (`--radiographs film|digital`, TOML `radiographs`, a manifest `Radiographs` column,
or a person's answer remembered in the output's settings) says how the radiographs of a batch
were acquired: scanned films (modality RG) or digital exports (DX). It answers only the question
of film or digital, for the radiograph kinds that exist as both (cephalograms, chest, hand-wrist,
limb, ...), which the local classifier marks with a `film_or_digital` entry in its modality
label's detail. Panoramic (PX), intraoral (IO) and mammography (MG) kinds keep their modality,
and photographs are not touched: unlike `--modality`, which forces one modality on every file,
the fact only settles film or digital. It is a fact, not a guess: the modality then carries the
confidence the classifier has in the kind family (a cephalogram is a cephalogram), no longer
capped below review for the open question. A file that states its acquisition itself (a whole
film format at a scanner's resolution: RG; 16-bit greyscale: DX) keeps it: the fact answers
only the files that leave the question open.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..errors import UsageError
from ..vocab.terms import modality_code
from .model import Label, Labels

RADIOGRAPHS = ("film", "digital")
# The modality of each acquisition, for the kinds that exist as both.
MODALITY_OF = {"film": "RG", "digital": "DX"}
# Modalities that are the film-or-digital question itself, when a source other than the local
# classifier names them (a remote service): the fact replaces the value, keeps the confidence.
FILM_OR_DIGITAL = frozenset(MODALITY_OF.values())
# Sources whose modality is a person's word: a batch fact never overrides them.
PERSON_SOURCES = frozenset({"option", "manifest", "path-template", "person"})
_ALIASES = {"film": "film", "films": "film", "rg": "film", "digital": "digital", "dx": "digital"}


def parse_radiographs(value: str, what: str = "--radiographs") -> str:
    """`film` or `digital` (also `films`, `RG`, `DX`); UsageError naming `what` otherwise."""
    v = _ALIASES.get(value.strip().lower())
    if v is None:
        raise UsageError(f"{what} must be film or digital, not {value!r}")
    return v


def film_or_digital(label: Label | None) -> dict[str, Any] | None:
    """The classifier's film-or-digital entry of a modality label, if the question applies."""
    if label is None or label.source in PERSON_SOURCES:
        return None
    entry = label.detail.get("film_or_digital")
    return entry if isinstance(entry, dict) else None


def open_question(labels: Labels) -> bool:
    """Whether the file is a radiograph whose film or digital nothing stated (neither the file
    itself, as a film-sized scan or a 16-bit file, nor a batch fact)."""
    lab = labels.get("modality")
    entry = film_or_digital(lab)
    if lab is None or entry is None:
        return False
    return lab.detail.get("acquisition") == "unknown" and "radiographs" not in lab.detail


def apply_radiographs(labels: Labels, radiographs: str, said_by: str, modality: str | None = None) -> Labels:
    """The modality of a radiograph from the batch fact (`film` or `digital`); other files and
    a modality a person gave are returned unchanged. `said_by` names where the fact came from
    (option, manifest, a person's answer) for the report. `modality`: the value the fact stands
    for where its source named one (decisions that all said CR: digital, written as CR, not as
    the kind's DX)."""
    lab = labels.get("modality")
    if lab is None or not lab.known or lab.source in PERSON_SOURCES:
        return labels
    entry = film_or_digital(lab)
    value = MODALITY_OF[radiographs]
    detail = {**lab.detail, "radiographs": radiographs, "radiographs_from": said_by}
    if entry is not None and lab.detail.get("acquisition") in RADIOGRAPHS:
        # The file states its own acquisition (a whole film at a scanner's resolution, a 16-bit
        # file): not the open question; it keeps what it states, the fact is noted beside it.
        return labels.with_label(replace(lab, detail={**detail, "radiographs_kept": "the file states it"}))
    if entry is not None:
        confidence = float(entry.get("confidence", lab.confidence))
        given = float(entry.get("given") or 0.0)
        if 0.0 < lab.confidence < given:  # a contradiction lowered it since: so much less sure
            confidence *= lab.confidence / given
        chosen = modality or str(entry.get(radiographs) or value)
        detail.pop("note", None)  # the note asked for this very fact
    elif lab.value in FILM_OR_DIGITAL:
        confidence, chosen = lab.confidence, modality or value
    else:  # PX, IO, MG, XC...: not the question
        return labels
    try:
        code = modality_code(chosen)
    except KeyError:
        return labels
    return labels.with_label(
        replace(
            lab,
            value=chosen,
            confidence=round(min(1.0, confidence), 4),
            codes=(code,),
            meaning=code.meaning,
            detail=detail,
        )
    )
