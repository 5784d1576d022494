"""`convert --confirm` asks the subject data once per visit (issue 26): which visit a photograph
is of, as the files come, in the order they were found (a camera names them in capture order).

A photograph (a capture time, modality XC or not known yet) taken at most `visit_gap` minutes
after the last one of the visit, in the same folder and with the same camera, is of that visit
(the rule of `dicom.plan.capture_sessions`, seen one file at a time, its series restart too); a
patient card starts a visit whose patient is the card's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..batch.cards import Card
from ..dicom.plan import PlanInput, series_restarts


@dataclass
class Visit:
    """The visit being confirmed: where, which camera, its last capture time, and what was
    answered for it."""

    folder: str
    camera: tuple[str, str]
    last: datetime
    answers: dict[str, str] = field(default_factory=dict)
    card: str = ""  # the patient a card named for it
    asked: bool = False  # its subject data asked (at its first photograph)
    views: list[str] = field(default_factory=list)  # its photographs' proposed views, in order


def session_photo(item: PlanInput) -> bool:
    """What visits are cut from (`dicom.plan.is_session_photo`), before the modality is sure."""
    return item.probe.exif.acquired is not None and item.labels.value("modality") in (None, "XC")


def _view(item: PlanInput) -> str:
    return (item.labels.value("protocol") or "").upper()


def camera(item: PlanInput) -> tuple[str, str]:
    return (item.probe.exif.make or "", item.probe.exif.model or "")


class Visits:
    """The current visit of a `--confirm` run; `gap` 0 (visits off): none, asked per file."""

    def __init__(self, gap: int):
        self.gap = gap
        self.current: Visit | None = None

    def of(self, item: PlanInput, folder: str) -> Visit | None:
        """The current visit, if this photograph is of it."""
        v, acquired = self.current, item.probe.exif.acquired
        if v is None or acquired is None or self.gap <= 0 or not session_photo(item):
            return None
        gap = (acquired - v.last).total_seconds()
        same = v.folder == folder and v.camera == camera(item) and 0 <= gap <= self.gap * 60
        if not same or series_restarts(v.views, _view(item)):
            return None
        v.views.append(_view(item))
        return v

    def new(self, item: PlanInput, folder: str) -> Visit | None:
        """A new visit starting with this photograph (None: not a visit's photograph)."""
        acquired = item.probe.exif.acquired
        if acquired is None or self.gap <= 0 or not session_photo(item):
            return None
        self.current = Visit(folder, camera(item), acquired, views=[_view(item)])
        return self.current

    def from_card(self, card: Card, folder: str) -> Visit | None:
        """The visit a patient card starts (None: it has no capture time, or visits are off)."""
        acquired = card.input.probe.exif.acquired
        if acquired is None or self.gap <= 0:
            return None
        who = card.patient.patient_id or card.patient.patient_name
        self.current = Visit(folder, camera(card.input), acquired, card=who)
        return self.current
