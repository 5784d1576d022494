"""A run in parts (issue 25): what the stages of one run share in the main process (`Run`), how
its new inputs are cut into parts of whole folders (`split_parts`), and how each part is planned
with the inputs earlier runs and earlier parts converted (`plan_part`), so that the coordinator
holds one part's analyses and plans, never the whole run's, and writes what one part would."""

from __future__ import annotations

import os
from array import array
from collections import deque
from dataclasses import dataclass, field

from .. import naming
from ..config import ConvertSettings
from ..dicom.plan import IdentityTally, plan_batch
from ..dicom.records import load_records, progress_records, visits
from .ahead import Ahead
from .record import WriteJob
from .results import Analysed, Event, ResultLog
from .resume import earlier_inputs
from .state import StateStore
from .visits import Visits
from .walk import FoundList

# A run with many new inputs is analysed, planned and written in parts of about this many (whole
# folders, so that cards, capture sessions and plan groups are never cut): the coordinator holds
# one part's analyses and plans, not the whole run's (issue 25). Each part is planned with the
# earlier parts' inputs of its plan groups, as a re-run is with earlier runs'.
PART_INPUTS = int(os.environ.get("ORTHOVISION_PART_INPUTS", "2000"))


@dataclass
class Run:
    """What the stages of one run share in the main process."""

    settings: ConvertSettings
    state: StateStore
    key: str  # the settings' key in the state
    results: ResultLog
    emit: Event
    budget: int  # --max-memory for the images in flight (0: none)
    total: int = 0  # inputs to analyse in this run (all parts)
    analysed: int = 0  # ... analysed so far
    written: int = 0  # ... recorded by the write stage so far
    warnings: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # about the run as a whole
    visits: Visits = field(default_factory=Visits)  # records.visits, a study's latest
    identity: IdentityTally = field(default_factory=IdentityTally)
    unchanged: set[str] = field(default_factory=set)  # paths found that this run does not convert
    seen: dict[str, str] = field(default_factory=dict)  # --force: content hash -> rel, this run
    ahead: Ahead | None = None  # new inputs analysed during the triage


def split_parts(todo: FoundList, size: int) -> deque[FoundList]:
    """`todo` in parts of whole folders, each of about `size` inputs or one folder (a folder
    is never cut); each part as compact as `todo` (issue 25)."""
    folders: dict[str, array[int]] = {}
    for i, path in enumerate(todo.paths()):
        folders.setdefault(os.path.dirname(path), array("i")).append(i)
    parts: deque[FoundList] = deque()
    part: array[int] = array("i")
    for files in folders.values():
        if part and len(part) + len(files) > size:
            parts.append(todo.take(part))
            part = array("i")
        part.extend(files)
    if part:
        parts.append(todo.take(part))
    return parts


def plan_part(run: Run, ok: list[Analysed]) -> list[WriteJob]:
    """Plans of the new inputs (numbered after those of earlier runs and parts), each with its
    names."""
    state, settings = run.state, run.settings
    # Earlier inputs are needed only to number new ones among them.
    earlier, unreadable = earlier_inputs(state, ok, run.unchanged) if ok else ([], [])
    run.warnings.extend(unreadable)
    new = {a.plan_input.key: a.rel for a in ok if a.plan_input is not None}
    items = [a.plan_input for a in ok if a.plan_input is not None] + earlier
    everything = plan_batch(items, state.secret(settings.uid_secret), visit_gap=settings.visit_gap)
    plans = [p for p in everything if new.get(p.input.key) == p.input.rel]
    run.identity.add(plans, everything)
    # Each visit this part touched, with all its instances (earlier runs' and parts' too): a
    # later part's entry of a study replaces an earlier part's.
    touched = {p.study_uid for p in plans}
    for v in visits(
        [p for p in everything if p.study_uid in touched],
        load_records(settings.records),
        progress_records(settings.records),
    ):
        run.visits.put(v)
    names = naming.assign_names(plans, settings.name_template)
    return [
        WriteJob(plan, dests, str(state.output), settings.on_collision, settings.fsync)
        for plan, dests in zip(plans, names, strict=True)
    ]
