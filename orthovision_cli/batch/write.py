"""The write stage, in a worker: each planned input's pixels are read, built into DICOM and
written under a temporary name (the main process's end, its jobs and what it records of each,
is `record.py`).

A collision with a file of another instance follows --on-collision; a file of the same instance
(same SOP Instance UID: a re-run) is replaced.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom

from ..dicom.iods.builders import build
from ..dicom.plan import VL_PHOTOGRAPHIC
from ..dicom.writer import write_temp
from ..errors import InputError, OrthovisionError, OutputError, UnreadableInput
from ..inputs.reader import load_pixels
from ..types import FileStatus, NativePixels, OnCollision, Pixels, Probe
from . import capture
from .analyse import one_line
from .record import WriteJob
from .results import FileResult


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


def drop_pending(res: FileResult) -> None:
    for tmp_name, _ in res.pending:
        Path(tmp_name).unlink(missing_ok=True)
    res.pending = []
    res.outputs = []


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
