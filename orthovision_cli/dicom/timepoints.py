"""The visit's place in treatment (issue 26): before, during or after orthodontic treatment.

A person states it (`--timepoint`, a manifest's `Timepoint`, a card's `timepoint=`), with the
date treatment started (`--treatment-start`) for the days since. It is written where DENT-OIP
(the open draft of ADA-1107, which dicom4ortho follows) puts it for a photograph, and where a
PACS shows it:

- Acquisition Context Sequence (VL Photographic Image): a CODE item "Longitudinal Temporal
  Event Type" (DCM 128741) with the event from CID 280 (Enrollment before treatment, Baseline
  for its start and progress, Posttreatment at and after its end), and for a progress visit a
  NUMERIC item "Longitudinal Temporal Offset from Event" (DCM 128740) in days (UCUM `d`);
- Study Description: "Progress 2026-03-02 (day 120)". A visit with no timepoint is described
  by its first capture ("Visit 2026-03-02 09:36"): what a PACS lists tells the visits apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from ..types import Code

EVENT_TYPE = Code("128741", "DCM", "Longitudinal Temporal Event Type")
OFFSET_FROM_EVENT = Code("128740", "DCM", "Longitudinal Temporal Offset from Event")
DAYS = Code("d", "UCUM", "day")
_ENROLLMENT = Code("C37948", "NCIt", "Enrollment")
_BASELINE = Code("121079", "DCM", "Baseline")
_POSTTREATMENT = Code("126074", "DCM", "Posttreatment")


@dataclass(frozen=True)
class Timepoint:
    term: str  # what PatientInfo.timepoint holds (a CS-like defined term)
    name: str  # shown in the Study Description
    event: Code  # Longitudinal Temporal Event Type (CID 280)
    counts_from_start: bool  # the days since treatment started say where in it this visit is


TIMEPOINTS = {
    t.term: t
    for t in (
        Timepoint("PRE_TREATMENT", "Pre-treatment", _ENROLLMENT, False),
        Timepoint("INITIAL", "Initial", _BASELINE, False),
        Timepoint("PROGRESS", "Progress", _BASELINE, True),
        Timepoint("FINAL", "Final", _POSTTREATMENT, False),
        Timepoint("POST_TREATMENT", "Post-treatment", _POSTTREATMENT, False),
    )
}
# What a person may type (case, spaces, '-' and '_' do not matter).
_SYNONYMS = {
    "pretreatment": "PRE_TREATMENT",
    "pre": "PRE_TREATMENT",
    "observation": "PRE_TREATMENT",
    "initial": "INITIAL",
    "start": "INITIAL",
    "progress": "PROGRESS",
    "final": "FINAL",
    "end": "FINAL",
    "posttreatment": "POST_TREATMENT",
    "post": "POST_TREATMENT",
    "retention": "POST_TREATMENT",
}


def parse_timepoint(value: str) -> str:
    """The defined term for what a person typed; raises ValueError naming the choices."""
    key = re.sub(r"[\s_-]", "", value).lower()
    if not key:
        return ""
    if key in _SYNONYMS:
        return _SYNONYMS[key]
    raise ValueError(
        f"timepoint {value!r} is not one of pre-treatment, initial, progress, final, post-treatment"
    )


def days_since(start: str, study_date: str) -> int | None:
    """Days from `start` to `study_date` (both YYYYMMDD); None when either is missing, or the
    visit is before the start (no progress can be counted from it)."""
    if not start or not study_date:
        return None
    a = date(int(start[:4]), int(start[4:6]), int(start[6:]))
    b = date(int(study_date[:4]), int(study_date[4:6]), int(study_date[6:]))
    return (b - a).days if b >= a else None


def offset_of(term: str, start: str, study_date: str) -> int | None:
    """The offset in days written for this timepoint (progress only)."""
    tp = TIMEPOINTS.get(term)
    return days_since(start, study_date) if tp is not None and tp.counts_from_start else None


def describe(term: str, study_date: str, first: datetime | None, offset: int | None) -> str:
    """The Study Description of a visit: its timepoint and date, else its first capture."""
    tp = TIMEPOINTS.get(term)
    day = f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:]}" if study_date else ""
    if tp is not None:
        text = f"{tp.name} {day}".strip()
        return f"{text} (day {offset})" if offset is not None else text
    if first is not None:
        return f"Visit {first:%Y-%m-%d %H:%M}"
    return ""


def study_facts(
    given: list[tuple[str, str]], photographs: bool, study_date: str, first: datetime | None
) -> dict[str, Any]:
    """A study's timepoint and offset (the first given, from its members' (timepoint, treatment
    start)) and its description: a study of photographs with a capture time (a visit) is
    described even without a timepoint. InstancePlan's fields of those names."""
    term = next((t for t, _ in given if t), "")
    start = next((s for _, s in given if s), "")
    offset = offset_of(term, start, study_date)
    text = describe(term, study_date, first, offset) if term or photographs else ""
    return {"study_description": text, "timepoint": term, "timepoint_offset": offset}
