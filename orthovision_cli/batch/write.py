"""The write stage: in a worker, each planned input's pixels are read, built into DICOM and
written under a temporary name; in the main process, the committer's finished files are recorded
in the state and the results.

A collision with a file of another instance follows --on-collision; a file of the same instance
(same SOP Instance UID: a re-run) is replaced.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pydicom

from ..dicom.iods.builders import build
from ..dicom.plan import VL_PHOTOGRAPHIC, InstancePlan
from ..dicom.writer import write_temp
from ..errors import InputError, OrthovisionError, OutputError, UnreadableInput
from ..inputs.reader import load_pixels
from ..memory import write_estimate
from ..types import EventKind, FileStatus, NativePixels, OnCollision, Pixels, Probe
from . import capture
from .analyse import one_line
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


def existing_uid(path: Path) -> str | None:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        return str(ds.get("SOPInstanceUID", "")) or None
    except Exception:
        return None


def resolve_dest(
    out: Path, rel: str, uid: str, policy: OnCollision | str, replaces: list[str] | None = None
) -> Path | None:
    dest = out / rel
    if (
        not dest.exists()
        or rel in (replaces or ())
        or existing_uid(dest) == uid
        or policy == OnCollision.OVERWRITE
    ):
        return dest
    if policy == OnCollision.SKIP:
        return None
    base = Path(rel)
    for n in range(2, 10_000):
        cand = out / base.with_name(f"{base.stem}_{n}{base.suffix}")
        if not cand.exists() or existing_uid(cand) == uid:
            return cand
    raise OutputError(f"too many files named like {rel}", path=dest)


def write_job(job: WriteJob) -> FileResult:
    """One input's instances written under temporary names; what the libraries said while
    its pixels were read goes into its result (`capture`)."""
    with capture.messages() as notes:
        res = _write_job(job)
    res.warnings = notes
    return res


def _write_job(job: WriteJob) -> FileResult:
    plan = job.plan
    item = plan.input
    start = time.perf_counter()
    res = FileResult(
        str(item.probe.path),
        item.rel,
        FileStatus.CONVERTED,
        content_hash=item.content_hash,
        labels=item.labels.as_dict(),
    )
    out = Path(job.output)
    try:
        check_source(item.probe)
        pages = load_pixels(
            item.probe, item.labels.orientation_value, photo=plan.sop_class_uid == VL_PHOTOGRAPHIC
        )
        instances: list[Pixels] = merge_frames(pages) if plan.multiframe else pages
        for i, px in enumerate(instances):
            page_plan = (
                plan
                if i == 0
                else replace(plan, sop_uid=plan.page_uids[i], instance_number=plan.instance_number + i)
            )
            built = build(page_plan, px)
            dest = resolve_dest(out, job.dests[i], page_plan.sop_uid, job.on_collision, job.replaces)
            if dest is None:
                res.status, res.reason = FileStatus.SKIPPED, "exists"
                res.message = f"{job.dests[i]} exists and --on-collision is skip"
                continue
            # Written under a temporary name; the main process's committer makes it durable
            # and gives it its name (group commit), while this worker goes on.
            tmp = write_temp(dest, built, px, item.probe.path, fsync=job.fsync)
            res.pending.append((str(tmp), str(dest)))
            res.outputs.append(dest.relative_to(out).as_posix())
        try:
            check_source(item.probe)
        except InputError:  # rewritten while copied: the output may mix two versions of it
            for o in res.outputs:
                (out / o).unlink(missing_ok=True)
            for tmp_name, _ in res.pending:
                Path(tmp_name).unlink(missing_ok=True)
            res.outputs, res.pending = [], []
            raise
    except InputError as exc:
        drop_pending(res)
        res.status, res.reason, res.message = FileStatus.FAILED, exc.reason, " ".join(exc.message.split())
    except OutputError:
        drop_pending(res)
        raise
    except OrthovisionError as exc:
        drop_pending(res)
        res.status, res.reason, res.message = FileStatus.FAILED, exc.reason, exc.message
    except MemoryError:
        drop_pending(res)  # all pages or none
        res.status, res.reason = FileStatus.FAILED, "image-too-large"
        res.message = "not enough memory to decode"
    except Exception as exc:
        drop_pending(res)
        res.status, res.reason = FileStatus.FAILED, "internal-error"
        res.message = one_line(exc)
    res.seconds = time.perf_counter() - start
    return res


def write_weight(job: WriteJob) -> int:
    """The memory writing this job may take (--max-memory), from its probe."""
    plan = job.plan
    return write_estimate(
        plan.input.probe, plan.input.labels.orientation_value, photo=plan.sop_class_uid == VL_PHOTOGRAPHIC
    )


def drop_pending(res: FileResult) -> None:
    for tmp_name, _ in res.pending:
        Path(tmp_name).unlink(missing_ok=True)
    res.pending = []
    res.outputs = []


def clear_pending(res: FileResult) -> FileResult:
    res.pending = []
    return res


def check_source(pr: Probe) -> None:
    """The input must still be the file analysed: its pixels (or JPEG data) are read only now."""
    try:
        st = pr.path.stat()
    except OSError as exc:
        raise UnreadableInput(
            f"the file disappeared during the run: {exc.strerror or exc}", path=pr.path, reason="vanished"
        ) from exc
    if st.st_size != pr.size or st.st_mtime != pr.mtime:
        raise InputError(
            "the file changed during the run; run again to convert its new content",
            path=pr.path,
            reason="changed",
        )


def merge_frames(pages: list[Pixels]) -> list[Pixels]:
    if len(pages) == 1:
        return pages
    arrays = [p.pixels.array for p in pages]  # type: ignore[union-attr]
    first = pages[0]
    merged = NativePixels(np.concatenate(arrays, axis=0), first.photometric, first.bits)
    return [
        replace(
            first,
            pixels=merged,
            frames=len(pages),
            derivation=[*first.derivation, f"{len(pages)} TIFF pages stored as frames"],
        )
    ]


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
        self.state.put(
            path=res.path,
            rel=res.rel,
            size=a.size,
            mtime_ns=a.mtime_ns,
            content_hash=res.content_hash,
            settings=self.key,
            status="done" if converted else str(res.status),
            reason=res.reason,
            message=res.message,
            outputs=outputs,
            labels=res.labels,
            plan_input=a.plan_input if converted else None,
        )
        self.results.append(res)
        self.emit(EventKind.WRITTEN, self.done, self.total, res)
