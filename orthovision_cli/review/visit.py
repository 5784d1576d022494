"""One patient for a whole visit on the review page (issue 26).

The photographs of a visit that no patient card names (or two) wait for review with one message
that names the visit (`batch/cards.py`: "visit without a patient card: say whose it is (visit of
2026-03-02 10:20:00, 5 photographs)"); those listed with the same reason, folder and message are
one visit. Naming it saves, for each of them, a decision holding only the subject (the Patient
ID; no label is decided), so the next `convert` or `review OUT --apply` writes that patient into
all of the visit's instances.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..batch.cards import CONFLICT, UNNAMED
from ..decisions import Decision, DecisionBook, clean
from ..errors import UsageError
from ..manifest import clean_patient
from .items import ReviewItem

VISIT_REASONS = (UNNAMED, CONFLICT)


def members(items: list[ReviewItem], item: ReviewItem) -> list[ReviewItem]:
    """The listed files of the visit `item` is of ([] if it waits for something else)."""
    if item.reason not in VISIT_REASONS:
        return []
    folder = Path(item.input).parent
    return [
        it
        for it in items
        if it.reason == item.reason and it.message == item.message and Path(it.input).parent == folder
    ]


def name_visit(payload: Any, items: list[ReviewItem], book: DecisionBook, who: str) -> list[Decision]:
    """Save `{"id": <a file of the visit>, "patient_id": ...}` for every file of its visit, or
    `{"ids": [...], "patient_id": ...}` for those files (a run a person ticked: "these are one
    patient"); returns the decisions as recorded."""
    if not isinstance(payload, dict):
        raise UsageError('expected {"id": ..., "patient_id": ...}')
    raw = payload.get("patient_id")
    if not isinstance(raw, str) or not raw.strip():
        raise UsageError("give the visit's Patient ID")
    by_id = {it.id: it for it in items}
    ids = payload.get("ids")
    if isinstance(ids, list) and ids and all(isinstance(i, int) and i in by_id for i in ids):
        visit = [by_id[i] for i in dict.fromkeys(ids)]
    elif isinstance(payload.get("id"), int) and payload["id"] in by_id:
        visit = members(items, by_id[payload["id"]])
        if not visit:
            raise UsageError("that file is not of a visit waiting for its patient")
    else:
        raise UsageError('expected {"id": ..., "patient_id": ...} or {"ids": [...], "patient_id": ...}')
    try:
        patient_id = clean_patient({"patient_id": raw}).patient_id
    except UsageError as exc:
        raise UsageError(f"Patient ID: {exc.message}") from exc
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    missing = [it.rel for it in visit if not it.sha256]
    if missing:
        raise UsageError(f"{missing[0]}: the state has no content hash; run convert again")
    decisions = [
        clean(
            Decision(
                it.input, it.sha256, decided_by=who, decided_at=now, decided_tags="", patient_id=patient_id
            )
        )
        for it in visit
    ]
    return book.save(decisions)
