"""Patient cards (issue 26): a photograph of a card with a QR code, Data Matrix or Code 128
names the patient of the visit that follows it.

`card_payload` maps a code's text to patient fields; `assign_cards` sees every photograph of the
batch (just before planning) and gives each card's patient to the photographs of the session it
starts: the capture sessions of `dicom.plan.capture_sessions`, cut again at each card. Two
different cards for one session send its photographs to review; the cards are not converted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ..dicom.plan import PatientInfo, PlanInput, capture_sessions
from ..errors import InputError, UsageError
from ..manifest import clean_patient
from ..types import FileStatus
from .results import Analysed, FileResult

REASON = "patient-card"
_BARE_ID = re.compile(r"[A-Za-z0-9._/-]{1,64}")
CONFLICT = "patient-card-conflict"
# The payload's keys, case-insensitive: the short ones and the DICOM keywords.
_KEYS = {
    "id": "patient_id",
    "patientid": "patient_id",
    "name": "patient_name",
    "patientname": "patient_name",
    "birth": "birth_date",
    "birthdate": "birth_date",
    "patientbirthdate": "birth_date",
}


class NotACard(InputError):
    """A code whose text is no patient card's (a web address on a poster): an ordinary photo."""


def card_payload(text: str) -> PatientInfo:
    """`P123` (the ID alone) or `id=P123; name=Doe^Jane; birth=2012-04-01` (`;` or new lines
    between pairs); raises InputError for a payload that names no patient or holds a bad value."""
    text = text.strip()
    if "=" not in text:
        # An ID alone is one word of letters, digits and . _ - /: a web address or a sentence
        # in a code on some other picture is not taken for a patient.
        if not _BARE_ID.fullmatch(text) or "://" in text:
            raise NotACard(f"patient card: {text[:40]!r} is not a patient ID", reason=REASON)
        values = {"patient_id": text}
    else:
        values = {}
        for part in re.split(r"[;\r\n]+", text):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            field_name = _KEYS.get(re.sub(r"[\s_-]", "", key).lower())
            if not sep or field_name is None:
                raise InputError(
                    f"patient card: {part.strip()[:40]!r} is not id=, name= or birth=", reason=REASON
                )
            values[field_name] = value.strip()
    try:
        patient = clean_patient(values)
    except UsageError as exc:
        raise InputError(f"patient card: {exc.message}", reason=REASON) from exc
    if not patient.patient_id and not patient.patient_name:
        raise InputError("patient card: no patient ID or name in it", reason=REASON)
    return patient


@dataclass
class Card:
    """A photograph read as a patient card: where and when it was taken, and whom it names."""

    input: PlanInput  # its capture time, folder and camera (modality XC)
    patient: PatientInfo


@dataclass
class Assigned:
    items: list[PlanInput]  # to plan: photographs with their card's patient, everything else
    conflicts: list[PlanInput] = field(default_factory=list)  # to review: two cards, one session


def assign_cards(items: Sequence[PlanInput], cards: Sequence[Card], visit_gap: int) -> Assigned:
    """Each card's patient given to the photographs after it in its capture session, up to the
    next card naming someone else; what options, a manifest or a path template said wins."""
    given, conflicts = _card_patients(items, cards, visit_gap)
    out = Assigned([])
    for item in items:
        if id(item) in conflicts:
            out.conflicts.append(item)
        else:
            out.items.append(_given(item, given))
    return out


def _given(item: PlanInput, given: dict[int, PatientInfo]) -> PlanInput:
    patient = given.get(id(item))
    return item if patient is None else replace(item, patient=patient.merged(item.patient))


def _card_patients(
    items: Sequence[PlanInput], cards: Sequence[Card], visit_gap: int
) -> tuple[dict[int, PatientInfo], set[int]]:
    """By id() of the item: the card's patient it gets; the items of two-card sessions."""
    by_key = {id(c.input): c for c in cards}
    given: dict[int, PatientInfo] = {}
    conflicts: set[int] = set()
    for session in capture_sessions([*items, *(c.input for c in cards)], visit_gap):
        current: list[PatientInfo] = []  # the cards of the part of the session being read
        photos: list[PlanInput] = []
        parts: list[tuple[list[PatientInfo], list[PlanInput]]] = []
        for item in session:
            card = by_key.get(id(item))
            if card is None:
                photos.append(item)
                continue
            if photos:  # a card after photographs starts the next part
                parts.append((current, photos))
                current, photos = [], []
            if card.patient not in current:
                current.append(card.patient)
        parts.append((current, photos))
        for patients, members in parts:
            if len(patients) > 1:
                conflicts.update(id(m) for m in members)
            elif patients:
                given.update((id(m), patients[0]) for m in members)
    return given, conflicts


def apply_cards(analysed: list[Analysed], visit_gap: int) -> list[Analysed]:
    """The cards' patients given to the analysed photographs (in place); those of a session with
    two different cards become review results, and are returned."""
    cards = [a.card for a in analysed if a.card is not None]
    if not cards:
        return []
    todo = [a for a in analysed if a.plan_input is not None]
    given, conflicts = _card_patients([a.plan_input for a in todo if a.plan_input], cards, visit_gap)
    held = []
    for a in todo:
        item = a.plan_input
        assert item is not None
        if id(item) not in conflicts:
            a.plan_input = _given(item, given)
            continue
        a.error = FileResult(
            a.found_path,
            a.rel,
            FileStatus.REVIEW,
            CONFLICT,
            "two different patient cards before this visit: say whose it is",
            labels=item.labels.as_dict(),
            content_hash=item.content_hash,
        )
        a.review_input, a.plan_input = item, None
        held.append(a)
    return held
