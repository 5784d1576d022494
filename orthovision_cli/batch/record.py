"""The main process's end of the write stage: the jobs it hands to the workers and what it
records of each finished one (the state row, the result).

Light on purpose: no numpy, Pillow or pydicom here. The workers load the stages (write.py); the
main process of a nightly run only plans, commits and records (issue 25).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..dicom.plan import VL_PHOTOGRAPHIC, InstancePlan
from ..memory import write_estimate
from ..types import EventKind, FileStatus, OnCollision
from .results import Analysed, Event, FileResult, ResultLog
from .state import StateStore
from .supersede import Superseder


@dataclass(slots=True)  # one per input, many kept: no __dict__ each
class WriteJob:
    plan: InstancePlan
    dests: list[str]  # relative output paths, one per instance
    output: str
    on_collision: OnCollision | str
    fsync: bool
    # Earlier files of this input that the new plan supersedes: their names may be taken.
    replaces: list[str] = field(default_factory=list)


def write_weight(job: WriteJob) -> int:
    """The memory writing this job may take (--max-memory), from its probe."""
    plan = job.plan
    return write_estimate(
        plan.input.probe, plan.input.labels.orientation_value, photo=plan.sop_class_uid == VL_PHOTOGRAPHIC
    )


def clear_pending(res: FileResult) -> FileResult:
    res.pending = []
    return res


def planned_results(jobs: list[WriteJob]) -> list[FileResult]:
    """--dry-run: what each job would write."""
    return [
        FileResult(
            str(job.plan.input.probe.path),
            job.plan.input.rel,
            FileStatus.PLANNED,
            outputs=job.dests,
            labels=job.plan.input.labels.as_dict(),
            content_hash=job.plan.input.content_hash,
        )
        for job in jobs
    ]


class Recorder:
    """The main process's end of the write stage: each finished input gets its state row (the
    plan as JSON when converted, so later runs number new inputs after it) and its result."""

    def __init__(
        self,
        state: StateStore,
        key: str,
        analysed: list[Analysed],
        results: list[FileResult] | ResultLog,
        emit: Event,
        total: int,
        superseder: Superseder | None = None,
    ) -> None:
        self.state, self.key, self.results, self.emit, self.total = state, key, results, emit, total
        self.by_path = {a.found_path: a for a in analysed}  # 200,000 inputs: no linear search
        self.done = 0
        self.superseder = superseder or Superseder(state)
        self.uids: dict[str, list[str]] = {}  # input path -> the SOP Instance UIDs written

    def prepare(self, job: WriteJob) -> WriteJob:
        """Before `job` is written: earlier files of its input that it supersedes are kept
        aside (their names may be taken by the new files)."""
        path = str(job.plan.input.probe.path)
        uids = job.plan.page_uids or [job.plan.sop_uid]
        self.uids[path] = uids
        job.replaces = self.superseder.prepare(path, job.dests, uids)
        return job

    def __call__(self, res: FileResult) -> None:
        self.done += 1
        a = self.by_path.pop(res.path)  # recorded once: its analysis is not kept after
        if res.rel == a.rel:  # the run's log keeps it: this process's copy, not the worker's
            res.rel = a.rel
        res.warnings = [*a.warnings, *(w for w in res.warnings if w not in a.warnings)]
        converted = res.status == FileStatus.CONVERTED
        uids = self.uids.pop(res.path, [])
        if converted:
            res.superseded = self.superseder.finish(res.path, res.outputs, uids)
            outputs = res.outputs
        else:  # not written anew: its earlier files (if any) stand
            outputs = self.superseder.abandon(res.path)
        put_row(self.state, self.key, a, res, outputs, converted)
        self.results.append(res)
        self.emit(EventKind.WRITTEN, self.done, self.total, res)


def put_row(
    state: StateStore, key: str, a: Analysed, res: FileResult, outputs: list[str] | None, converted: bool
) -> None:
    """The state row of an input whose run ends with `res`: as the walk found it (`a`), with its
    outputs, and its plan where it was converted (a later run numbers new inputs after it)."""
    state.put(
        path=a.found_path,
        rel=res.rel,
        size=a.size,
        mtime_ns=a.mtime_ns,
        content_hash=res.content_hash,
        settings=key,
        status="done" if converted else str(res.status),
        reason=res.reason,
        message=res.message,
        outputs=outputs,
        labels=res.labels,
        plan_input=a.plan_input if converted else None,
    )
