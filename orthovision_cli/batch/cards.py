"""Patient cards (issue 26): a photograph of a card with a QR code, Data Matrix or Code 128
names the patient of the visit that follows it.

`card_payload` maps a code's text to patient fields; `assign_cards` sees every photograph of the
batch (just before planning) and gives each card's patient to the photographs of the session it
starts: the capture sessions of `dicom.plan.capture_sessions`, cut again at each card. Two
different cards for one session send its photographs to review; the cards are not converted.
Where cards are in use (a card in the same folder), a visit no card names is a person's to name:
its photographs go to review, unless a person named one of them (then all of them follow).
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
from .state import StateStore, from_db

REASON = "patient-card"
_BARE_ID = re.compile(r"[A-Za-z0-9._/-]{1,64}")
CONFLICT = "patient-card-conflict"
# A visit no card names, in a folder where cards are in use: its patient is a person's to say.
UNNAMED = "visit-without-patient"
UNNAMED_MESSAGE = "visit without a patient card: say whose it is"
UNNAMED_BEFORE_CARD = "photographed before its visit's patient card: say whose it is"
CONFLICT_MESSAGE = "two different patient cards before this visit: say whose it is"
# The payload's keys, case-insensitive: the short ones and the DICOM keywords.
_KEYS = {
    "id": "patient_id",
    "patientid": "patient_id",
    "name": "patient_name",
    "patientname": "patient_name",
    "birth": "birth_date",
    "birthdate": "birth_date",
    "patientbirthdate": "birth_date",
    "timepoint": "timepoint",
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
    unnamed: list[PlanInput] = field(default_factory=list)  # to review: a visit without a card


@dataclass
class _Visits:
    """What the cards make of the photographs, by id() of the item."""

    given: dict[int, PatientInfo] = field(default_factory=dict)  # the patient each one gets
    # To review: (reason, message): two cards before its visit, or no patient at all.
    held: dict[int, tuple[str, str]] = field(default_factory=dict)


def assign_cards(items: Sequence[PlanInput], cards: Sequence[Card], visit_gap: int) -> Assigned:
    """Each card's patient given to the photographs after it in its capture session, up to the
    next card naming someone else; what options, a manifest or a path template said wins."""
    found = _card_patients(items, cards, visit_gap)
    out = Assigned([])
    for item in items:
        reason = found.held.get(id(item), ("", ""))[0]
        if reason == CONFLICT:
            out.conflicts.append(item)
        elif reason == UNNAMED:
            out.unnamed.append(item)
        else:
            out.items.append(_given(item, found.given))
    return out


def _given(item: PlanInput, given: dict[int, PatientInfo]) -> PlanInput:
    patient = given.get(id(item))
    return item if patient is None else replace(item, patient=patient.merged(item.patient))


def _folder(item: PlanInput) -> str:
    return item.probe.path.parent.absolute().as_posix()


def _named(patient: PatientInfo) -> bool:
    return bool(patient.patient_id or patient.patient_name)


def _card_patients(items: Sequence[PlanInput], cards: Sequence[Card], visit_gap: int) -> _Visits:
    """Each session cut at its cards; each part's photographs get its card's patient (two
    different cards: a conflict). In a folder where cards are in use, a part no card names takes
    the patient a person gave one of its photographs (a decision, a manifest row), else it is
    unnamed: never written under an empty or guessed patient."""
    by_key = {id(c.input): c for c in cards}
    with_cards = {_folder(c.input) for c in cards}
    out = _Visits()
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
        carded = any(patients for patients, _ in parts)
        for patients, members in parts:
            if len(patients) > 1:
                _name_the_visit(members, (CONFLICT, CONFLICT_MESSAGE), out)
            elif patients:
                out.given.update((id(m), patients[0]) for m in members)
            elif members and _folder(members[0]) in with_cards:
                _name_the_visit(members, (UNNAMED, UNNAMED_BEFORE_CARD if carded else UNNAMED_MESSAGE), out)
    return out


# What a person's patient for one photograph of a card-less visit gives the others.
_VISIT_FIELDS = ("patient_id", "patient_name", "birth_date", "sex", "age", "study_date")


def _name_the_visit(members: list[PlanInput], why: tuple[str, str], out: _Visits) -> None:
    """A visit (or the photographs before its card) that no card names, or two: one patient
    given to some of its photographs (a decision at --confirm or on the review page, a manifest)
    is the visit's; none, or several: those without one go to review. The message names the
    visit (its first capture) so that the review page can name all of it at once."""
    named = {(m.patient.patient_id, m.patient.patient_name): m for m in members if _named(m.patient)}
    if len(named) == 1:
        source = next(iter(named.values())).patient
        visit = PatientInfo(**{f: getattr(source, f) for f in _VISIT_FIELDS})
        out.given.update((id(m), visit) for m in members if not _named(m.patient))
        return
    reason, message = why
    if named:
        message = "photographs of this visit name different patients: say whose this one is"
    first = members[0].probe.exif.acquired
    stamp = f" (visit of {first:%Y-%m-%d %H:%M:%S}, {len(members)} photographs)" if first else ""
    out.held.update((id(m), (reason, message + stamp)) for m in members if not _named(m.patient))


def apply_cards(analysed: list[Analysed], visit_gap: int) -> list[Analysed]:
    """The cards' patients given to the analysed photographs (in place); those of a session with
    two different cards, and those of a visit no card names (where cards are in use), become
    review results, and are returned."""
    cards = [a.card for a in analysed if a.card is not None]
    if not cards:
        return []
    todo = [a for a in analysed if a.plan_input is not None]
    found = _card_patients([a.plan_input for a in todo if a.plan_input], cards, visit_gap)
    held = []
    for a in todo:
        item = a.plan_input
        assert item is not None
        if id(item) not in found.held:
            a.plan_input = _given(item, found.given)
            continue
        reason, message = found.held[id(item)]
        a.error = FileResult(
            a.found_path,
            a.rel,
            FileStatus.REVIEW,
            reason,
            message,
            labels=item.labels.as_dict(),
            content_hash=item.content_hash,
        )
        a.review_input, a.plan_input = item, None
        held.append(a)
    return held


def visit_inputs(state: StateStore) -> set[str]:
    """What a run limited to some inputs (`review --apply`, a hot folder's settled files) must
    see again all the same: the cards (nothing else names their visits) and the photographs of
    visits waiting for their patient (a person's patient for one of them names all of them)."""
    rows = state.db.execute(
        "SELECT path FROM inputs WHERE (status='ignored' AND reason=?) OR (status='review' AND reason=?)",
        (REASON, UNNAMED),
    ).fetchall()
    return {from_db(p) for (p,) in rows}
