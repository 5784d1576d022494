"""Run a conversion batch: find → analyse (probe, classify) → plan → write → report.

Analysis and writing run in worker processes (`--jobs`); the main process alone talks to the
state store, so a crash at any moment leaves either a finished output with its state row, or a
temp file that the next run deletes and an input that it converts again (same UIDs, same name).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pickle
import sys
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import naming
from ..bounded import bounded_map
from ..config import ConvertSettings
from ..dicom.plan import VL_PHOTOGRAPHIC, InstancePlan, PlanInput, check_frame_limits, plan_batch
from ..errors import (
    ExitCode,
    InputError,
    NeedsReview,
    OrthovisionError,
    OutputError,
    UnreadableInput,
    UnsupportedFormat,
    UsageError,
)
from ..inputs.formats import IMAGE_SUFFIXES
from ..inputs.source import SourceImage, hash_mapped, mapped
from ..labels.fuse import fuse
from ..labels.model import TAGS, Label, Labels
from ..manifest import Manifest, PathTemplate, UserInput
from ..memory import SMALL_TASK, analyse_estimate, write_estimate
from ..review.decisions import DecisionBook
from ..types import NativePixels, Orientation, Pixels, Probe
from .archives import expand_archives
from .commits import Committer
from .procs import die_with_parent
from .state import StateStore, remove_temp_files
from .walk import FoundInput, find_inputs

TMP_PREFIX = ".orthovision-tmp-"  # as dicom.writer.TMP_PREFIX (kept light to import)



@dataclass
class FileResult:
    path: str
    rel: str
    status: str  # converted, unchanged, failed, review, skipped, planned
    reason: str = ""
    message: str = ""
    outputs: list[str] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""
    seconds: float = 0.0
    # Written under temporary names, awaiting fsync and rename by the main process.
    pending: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "input": self.path, "rel": self.rel, "sha256": self.content_hash,
            "status": self.status, "reason": self.reason, "message": self.message,
            "outputs": self.outputs, "labels": self.labels, "seconds": round(self.seconds, 4),
        }


@dataclass
class RunSummary:
    results: list[FileResult]
    exit_code: ExitCode
    output: Path
    report_path: Path | None = None
    fatal: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # one line each, e.g. a stale decision

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out


Event = Callable[[str, int, int, FileResult | None], None]


# ------------------------------------------------------------------ worker side

@dataclass
class _Context:
    settings: ConvertSettings
    user: UserInput
    sources: list[Any]
    decisions: DecisionBook | None = None  # a person's labels from the review page


_CTX: _Context | None = None


def _label_sources(settings: ConvertSettings) -> list[Any]:
    """The classifiers, in priority order: the remote service (if any), then the local pack."""
    sources: list[Any] = []
    if settings.remote:  # one service, or several fused per tag (remote.multi)
        from ..remote.multi import build_remote_sources

        sources.append(
            build_remote_sources(settings.remote, settings.remote_options, settings.min_confidence))
    if settings.use_models:
        from ..labels.local import load_pack

        sources.append(load_pack(settings.models))
    return sources


def _init_worker(settings: ConvertSettings, user: UserInput) -> None:
    global _CTX
    import logging

    from PIL import Image

    # --max-pixels is the one decompression-bomb guard; Pillow's own (lower) limit would
    # refuse genuine large scans the user allowed. tifffile's warnings about odd tags are
    # noise on a batch's terminal: real problems surface as per-file errors.
    Image.MAX_IMAGE_PIXELS = settings.max_pixels
    logging.getLogger("tifffile").setLevel(logging.ERROR)
    decisions = DecisionBook(settings.output) if settings.output is not None else None
    _CTX = _Context(settings, user, _label_sources(settings), decisions)


def _init_pool_worker(parent: int, settings: ConvertSettings, user: UserInput) -> None:
    die_with_parent(parent)  # no orphan writing files after a kill -9 of the main process
    # One ONNX thread per worker process: N workers x N threads would fight over the cores.
    os.environ.setdefault("ORTHOVISION_THREADS", "1")
    _init_worker(settings, user)


@dataclass
class Analysed:
    found_path: str
    rel: str
    size: int
    mtime_ns: int
    plan_input: PlanInput | None = None
    error: FileResult | None = None
    # For a file sent to review: what would be planned, should a person confirm it (--confirm).
    review_input: PlanInput | None = None


def _exif_labels(pr: Probe) -> Labels:
    if pr.exif.orientation == 1:
        return Labels()
    o = Orientation.from_exif(pr.exif.orientation)
    return Labels(orientation=Label("orientation", str(o), 1.0, "exif",
                                    detail={"exif_orientation": pr.exif.orientation}))


def analyse(found: FoundInput) -> Analysed:
    from ..inputs.reader import probe

    assert _CTX is not None
    start = time.perf_counter()
    path = found.path
    try:
        if found.problem:
            raise UnreadableInput(found.problem, path=path)
        try:
            st = path.stat()
        except OSError as exc:
            raise UnreadableInput(f"cannot read file: {exc.strerror or exc}", path=path) from exc
        if not os.access(path, os.R_OK):
            raise UnreadableInput("permission denied", path=path, reason="permission-denied")
        with mapped(path) as (mm, _):  # one open and one map: hash and probe read it once
            digest = hash_mapped(mm)
            pr = probe(path, _CTX.settings.max_pixels, data=mm)
        check_frame_limits(pr)  # what DICOM cannot hold fails now, before any pixel is read
        patient, user_labels = _CTX.user.for_file(found.rel, path.absolute())
        decided = _CTX.decisions.labels_for(str(path), digest) if _CTX.decisions else None
        if decided is not None:  # a person decided all four tags for this very content
            user_labels = decided
        candidates = [user_labels, _exif_labels(pr)]
        image = SourceImage(path, found.rel, pr.format)
        for src in _CTX.sources:
            # Only ask the models for what nobody has said with certainty.
            if all(user_labels.get(t) is not None for t in TAGS):
                break
            candidates.append(src.classify(image))
        labels = fuse(candidates) if decided is None else decided
        try:
            labels = _apply_policy(labels, _CTX.settings, path)
        except NeedsReview as exc:  # the review page shows what was proposed
            res = _failure(found, exc, start)
            res.labels, res.content_hash = labels.as_dict(), digest
            held = PlanInput(digest, found.rel, pr, labels, patient, digest)
            return Analysed(str(path), found.rel, st.st_size, st.st_mtime_ns, error=res, review_input=held)
        key = digest
        item = PlanInput(key, found.rel, pr, labels, patient, digest)
        return Analysed(str(path), found.rel, st.st_size, st.st_mtime_ns, plan_input=item)
    except UnsupportedFormat as exc:
        if path.suffix.lower() not in IMAGE_SUFFIXES and exc.reason == "unsupported-format":
            # A README or spreadsheet beside the images: not an image, not a failure.
            ignored = FileResult(str(path), found.rel, "ignored", "not-an-image", exc.message)
            return Analysed(str(path), found.rel, 0, 0, error=ignored)
        return Analysed(str(path), found.rel, 0, 0, error=_failure(found, exc, start))
    except InputError as exc:
        return Analysed(str(path), found.rel, 0, 0, error=_failure(found, exc, start))
    except OutputError:
        raise
    except MemoryError:
        err = InputError("not enough memory to analyse", path=path, reason="image-too-large")
        return Analysed(str(path), found.rel, 0, 0, error=_failure(found, err, start))
    except Exception as exc:  # a bug or a library's surprise: one file fails, the batch goes on
        err = InputError(_one_line(exc), path=path, reason="internal-error")
        return Analysed(str(path), found.rel, 0, 0, error=_failure(found, err, start))


def _one_line(exc: BaseException) -> str:
    """An unexpected exception as one line for the report (the traceback only with --debug)."""
    text = " ".join(str(exc).split())
    msg = f"unexpected {type(exc).__name__}: {text[:300]}"
    if os.environ.get("ORTHOVISION_DEBUG"):
        import traceback

        msg += " | " + " | ".join(
            line.strip() for line in traceback.format_exception(exc) if line.strip()
        )
    return msg


def _apply_policy(labels: Labels, settings: ConvertSettings, path: Path) -> Labels:
    """--min-confidence / --on-uncertain: never write a guessed label silently."""
    uncertain = [lab for lab in labels
                 if lab.known and lab.confidence < settings.min_confidence]
    if not uncertain:
        return labels
    names = ", ".join(f"{lab.tag}={lab.value} ({lab.confidence:.2f} from {lab.source})"
                      for lab in uncertain)
    if settings.on_uncertain == "review":
        raise NeedsReview(f"not sure enough: {names}", path=path)
    if settings.on_uncertain == "skip":
        raise NeedsReview(f"skipped, not sure enough: {names}", path=path, reason="uncertain-skipped")
    # convert: write the image, leaving the uncertain tags unknown.
    for lab in uncertain:
        labels = labels.with_label(replace(lab, value=None, detail={**lab.detail, "dropped": lab.value}))
    return labels


def _failure(found: FoundInput, exc: OrthovisionError, start: float) -> FileResult:
    status = "failed"
    if isinstance(exc, NeedsReview):
        status = "review" if exc.reason == "needs-review" else "skipped"
    return FileResult(str(found.path), found.rel, status, exc.reason, " ".join(exc.message.split()),
                      seconds=time.perf_counter() - start)


@dataclass
class WriteJob:
    plan: InstancePlan
    dests: list[str]  # relative output paths, one per instance
    output: str
    on_collision: str
    fsync: bool


def _existing_uid(path: Path) -> str | None:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        return str(ds.get("SOPInstanceUID", "")) or None
    except Exception:
        return None


def _resolve_dest(out: Path, rel: str, uid: str, policy: str) -> Path | None:
    dest = out / rel
    if not dest.exists() or _existing_uid(dest) == uid or policy == "overwrite":
        return dest
    if policy == "skip":
        return None
    base = Path(rel)
    for n in range(2, 10_000):
        cand = out / base.with_name(f"{base.stem}_{n}{base.suffix}")
        if not cand.exists() or _existing_uid(cand) == uid:
            return cand
    raise OutputError(f"too many files named like {rel}", path=dest)


def write_job(job: WriteJob) -> FileResult:
    from ..dicom.iods.builders import build
    from ..dicom.writer import write_temp
    from ..inputs.reader import load_pixels

    plan = job.plan
    item = plan.input
    start = time.perf_counter()
    res = FileResult(str(item.probe.path), item.rel, "converted", content_hash=item.content_hash,
                     labels=item.labels.as_dict())
    out = Path(job.output)
    try:
        _check_source(item.probe)
        pages = load_pixels(item.probe, item.labels.orientation_value,
                            photo=plan.sop_class_uid == VL_PHOTOGRAPHIC)
        instances: list[Pixels] = _merge_frames(pages) if plan.multiframe else pages
        for i, px in enumerate(instances):
            page_plan = plan if i == 0 else replace(
                plan, sop_uid=plan.page_uids[i], instance_number=plan.instance_number + i)
            built = build(page_plan, px)
            dest = _resolve_dest(out, job.dests[i], page_plan.sop_uid, job.on_collision)
            if dest is None:
                res.status, res.reason = "skipped", "exists"
                res.message = f"{job.dests[i]} exists and --on-collision is skip"
                continue
            # Written under a temporary name; the main process's committer makes it durable
            # and gives it its name (group commit), while this worker goes on.
            tmp = write_temp(dest, built, px, item.probe.path, fsync=job.fsync)
            res.pending.append((str(tmp), str(dest)))
            res.outputs.append(dest.relative_to(out).as_posix())
        try:
            _check_source(item.probe)
        except InputError:  # rewritten while copied: the output may mix two versions of it
            for o in res.outputs:
                (out / o).unlink(missing_ok=True)
            for tmp_name, _ in res.pending:
                Path(tmp_name).unlink(missing_ok=True)
            res.outputs, res.pending = [], []
            raise
    except InputError as exc:
        _drop_pending(res)
        res.status, res.reason, res.message = "failed", exc.reason, " ".join(exc.message.split())
    except OutputError:
        _drop_pending(res)
        raise
    except OrthovisionError as exc:
        _drop_pending(res)
        res.status, res.reason, res.message = "failed", exc.reason, exc.message
    except MemoryError:
        _drop_pending(res)  # all pages or none
        res.status, res.reason, res.message = "failed", "image-too-large", "not enough memory to decode"
    except Exception as exc:
        _drop_pending(res)
        res.status, res.reason = "failed", "internal-error"
        res.message = _one_line(exc)
    res.seconds = time.perf_counter() - start
    return res


def _drop_pending(res: FileResult) -> None:
    for tmp_name, _ in res.pending:
        Path(tmp_name).unlink(missing_ok=True)
    res.pending = []
    res.outputs = []


def _clear_pending(res: FileResult) -> FileResult:
    res.pending = []
    return res


def _check_source(pr: Probe) -> None:
    """The input must still be the file analysed: its pixels (or JPEG data) are read only now."""
    try:
        st = pr.path.stat()
    except OSError as exc:
        raise UnreadableInput(f"the file disappeared during the run: {exc.strerror or exc}",
                              path=pr.path, reason="vanished") from exc
    if st.st_size != pr.size or st.st_mtime != pr.mtime:
        raise InputError("the file changed during the run; run again to convert its new content",
                         path=pr.path, reason="changed")


def _merge_frames(pages: list[Pixels]) -> list[Pixels]:
    import numpy as np

    if len(pages) == 1:
        return pages
    arrays = [p.pixels.array for p in pages]  # type: ignore[union-attr]
    first = pages[0]
    merged = NativePixels(np.concatenate(arrays, axis=0), first.photometric, first.bits)
    return [replace(first, pixels=merged, frames=len(pages),
                    derivation=[*first.derivation, f"{len(pages)} TIFF pages stored as frames"])]


# ------------------------------------------------------------------ main side

def settings_key(settings: ConvertSettings) -> str:
    """What changes the DICOM written for an input: a change means re-convert."""
    manifest_hash = ""
    if settings.manifest is not None:
        try:
            manifest_hash = hashlib.sha256(settings.manifest.read_bytes()).hexdigest()
        except OSError:
            manifest_hash = "unreadable"
    pack_id = ""
    if settings.use_models:
        pack_id = str(settings.models or "default")
        from ..labels.local.packs import default_pack_path  # light, but its package is not

        manifest_file = (settings.models or default_pack_path()) / "manifest.json"
        if manifest_file.exists():
            pack_id += hashlib.sha256(manifest_file.read_bytes()).hexdigest()
    payload = {
        "patient": settings.patient, "labels": settings.labels, "manifest": manifest_hash,
        "template": settings.path_template, "names": settings.name_template,
        "models": pack_id, "remote": settings.remote,
        "remote_tags": list(settings.remote_options.get("tags", ())), "min": settings.min_confidence,
        "uncertain": settings.on_uncertain,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def build_user_input(settings: ConvertSettings) -> UserInput:
    from ..labels.model import normalise_tag

    labels = {}
    for name, value in settings.labels.items():
        tag = normalise_tag(name) or name
        if tag not in TAGS:
            raise UsageError(f"unknown label {name!r}")
        if value:
            labels[tag] = value
    user = UserInput(dict(settings.patient), labels)
    from ..manifest import clean_patient, user_label

    clean_patient(user.options_patient)  # fail fast on a bad option
    for tag, value in labels.items():
        user_label(tag, value, "option")
    if settings.manifest is not None:
        user.manifest = Manifest(settings.manifest)
    if settings.path_template:
        user.template = PathTemplate(settings.path_template)
    return user


def _preload() -> None:
    """Import what every worker needs (numpy, Pillow, pydicom and our readers and writer) once,
    before the fork, so the workers share it instead of each importing it again; only when
    there is work (a run with nothing new never loads them)."""
    import importlib

    for name in ("..inputs.reader", "..dicom.iods.builders", "..dicom.writer"):
        importlib.import_module(name, __package__)


def _executor(settings: ConvertSettings, user: UserInput, n_items: int,
              io_bound: bool = False) -> Executor | None:
    if io_bound:
        # Remote classification waits on the network: many images in flight from threads of
        # this process (one HTTP connection pool), not one per worker process.
        _init_worker(settings, user)
        concurrency = int(settings.remote_options.get("concurrency", 4))
        return ThreadPoolExecutor(max(1, min(concurrency, n_items)), thread_name_prefix="analyse")
    workers = min(settings.worker_count, max(n_items, 1))
    if settings.use_models and (settings.cluster or workers > 1):
        # Fail fast on a broken pack, before any work; only when there is work (a run with
        # nothing new never loads onnxruntime). The one worker path loads it in _init_worker.
        _label_sources(settings)
    if settings.cluster:  # a Dask cluster does the heavy part (batch/cluster.py)
        from .cluster import DaskExecutor

        return DaskExecutor(settings, user)
    if workers <= 1:
        _init_worker(settings, user)
        return None
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    if ctx.get_start_method() == "fork":
        _preload()
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_pool_worker,
                               initargs=(os.getpid(), settings, user))


def _map(pool: Executor | None, fn: Callable[[Any], Any], items: list[Any],
         weight: Callable[[Any], int] | None = None, budget: int = 0) -> Iterator[Any]:
    """Results in completion order; a bounded number of tasks in flight, and with `weight` the
    estimated memory of those in flight within `budget` (--max-memory)."""
    if pool is None:
        for it in items:
            yield fn(it)
        return
    limit = max(4, 2 * getattr(pool, "_max_workers", 2))
    for _, fut in bounded_map(pool, fn, items, limit, weight, budget):
        yield fut.result()


def _analyse_weight(settings: ConvertSettings) -> Callable[[FoundInput], int]:
    classify = settings.use_models or bool(settings.remote)

    def weight(found: FoundInput) -> int:
        if not classify or found.problem:
            return SMALL_TASK
        suffix = found.path.suffix
        if suffix.lower() in (".jpg", ".jpeg", ".jpe", ".jfif"):
            return SMALL_TASK
        try:
            size = found.path.stat().st_size
        except OSError:
            return SMALL_TASK
        return analyse_estimate(size, suffix, classify)

    return weight


def _write_weight(job: WriteJob) -> int:
    plan = job.plan
    return write_estimate(plan.input.probe, plan.input.labels.orientation_value,
                          photo=plan.sop_class_uid == VL_PHOTOGRAPHIC)


def run_convert(settings: ConvertSettings, on_event: Event | None = None,
                argv: list[str] | None = None, only: Collection[str] | None = None,
                confirm: Callable[[Analysed], Analysed] | None = None) -> RunSummary:
    """Convert a batch. `only` (absolute input paths) limits the work to those inputs (the
    review page's decided files, a hot folder's settled files); the others found keep their
    recorded status in the report. `confirm` sees each analysed file before it is planned
    (`convert --confirm`: a person at the terminal)."""
    started = time.perf_counter()
    settings.validate()
    emit: Event = on_event or (lambda *a: None)
    user = build_user_input(settings)
    output = settings.output
    assert output is not None
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {output}: {exc.strerror or exc}",
                          path=output) from exc
    if not os.access(output, os.W_OK):
        raise OutputError(f"output folder {output} is not writable", path=output)

    results: list[FileResult] = []
    with StateStore(output) as state:
        remove_temp_files(output, TMP_PREFIX)
        state.start_run(argv or [])
        secret = state.secret()
        # Absolute paths: the state must know an input again whatever the working folder.
        roots = [p.absolute() for p in settings.inputs]
        found = find_inputs(roots, settings.include, settings.exclude, skip_dirs=[output])
        found = expand_archives(found, state.dir / "archives", settings.include, settings.exclude)
        if not found:
            return RunSummary([], ExitCode.NOTHING_FOUND, output, seconds=time.perf_counter() - started)
        key = settings_key(settings)
        todo, unchanged = _triage(found, state, key, settings.force, output)
        if only is not None:
            held = [f for f in todo if str(f.path) not in only]
            todo = [f for f in todo if str(f.path) in only]
            results.extend(_held_results(held, state))
        for rec_found, rec in unchanged:
            r = FileResult(str(rec_found.path), rec_found.rel, "unchanged", outputs=rec.outputs,
                           labels=rec.labels, content_hash=rec.content_hash)
            results.append(r)
        emit("found", len(todo), len(found), None)

        fatal = ""
        warnings: list[str] = []
        remote = bool(settings.remote)
        pool = _executor(settings, user, len(todo), io_bound=remote) if todo else None
        try:
            analysed: list[Analysed] = []
            # On a cluster the images are in the workers' memory, bounded by Dask's own
            # per-worker limit, not in this machine's.
            budget = 0 if settings.cluster else settings.memory_budget
            for i, a in enumerate(_map(pool, analyse, todo, _analyse_weight(settings), budget),
                                  start=1):
                if confirm is not None:
                    a = confirm(a)
                analysed.append(a)
                if a.error is not None:
                    results.append(a.error)
                    if not settings.dry_run:
                        state.put(path=a.found_path, rel=a.rel, size=a.size, mtime_ns=a.mtime_ns,
                                  content_hash=a.error.content_hash, settings=key,
                                  status=a.error.status, reason=a.error.reason,
                                  message=a.error.message, labels=a.error.labels)
                    emit("analysed", i, len(todo), a.error)
                else:
                    emit("analysed", i, len(todo), None)
            # Results come in completion order, which varies between runs (and between the
            # pool and a cluster); which of two identical files is converted must not.
            order = {str(f.path): i for i, f in enumerate(todo)}
            analysed.sort(key=lambda a: order.get(a.found_path, 0))
            for note in _stale_decisions(analysed, DecisionBook(output)):
                warnings.append(f"{note.rel}: {note.message}")
                emit("warning", 0, 0, note)
            if remote and pool is not None:
                pool.shutdown(wait=True)
                pool = _executor(settings, user, len(todo))
            ok = [a for a in analysed if a.plan_input is not None]
            ok = _dedupe(ok, state, key, results, settings.force)
            meta = {a.plan_input.key: a for a in ok if a.plan_input}
            # Earlier inputs are needed only to number new ones among them.
            earlier = _earlier_inputs(state, {a.found_path for a in ok}, found) if ok else []
            plans = plan_batch([a.plan_input for a in ok if a.plan_input] + earlier, secret)
            plans = [p for p in plans if p.input.key in meta and meta[p.input.key].rel == p.input.rel]
            jobs = _assign_names(plans, settings, output)
            if settings.dry_run:
                for job in jobs:
                    results.append(FileResult(str(job.plan.input.probe.path), job.plan.input.rel,
                                              "planned", outputs=job.dests,
                                              labels=job.plan.input.labels.as_dict(),
                                              content_hash=job.plan.input.content_hash))
            else:
                by_path = {x.found_path: x for x in ok}  # 200,000 inputs: no linear search
                done_count = 0

                def record(res: FileResult) -> None:
                    nonlocal done_count
                    done_count += 1
                    a = by_path[res.path]
                    state.put(path=res.path, rel=res.rel, size=a.size, mtime_ns=a.mtime_ns,
                              content_hash=res.content_hash, settings=key,
                              status="done" if res.status == "converted" else res.status,
                              reason=res.reason, message=res.message, outputs=res.outputs,
                              labels=res.labels,
                              plan_input=a.plan_input if res.status == "converted" else None)
                    results.append(res)
                    emit("written", done_count, len(jobs), res)

                # Group commit: a thread makes finished files durable and visible in batches
                # while the workers go on with the next ones.
                committer = Committer(fsync=settings.fsync)
                try:
                    for res in _map(pool, write_job, jobs, _write_weight, budget):
                        if res.pending:
                            committer.submit(res, res.pending)
                        else:
                            record(res)
                        for done in committer.finished():
                            record(_clear_pending(done))
                finally:
                    # Also when the run must stop: what reached its name is in the state.
                    for done in committer.close():
                        record(_clear_pending(done))
                if committer.error is not None:
                    raise committer.error
        except OutputError as exc:
            fatal = exc.one_line()
        except KeyboardInterrupt:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if fatal:
            # Files written but not committed when the run had to stop: never leave them.
            remove_temp_files(output, TMP_PREFIX)
        summary = RunSummary(results, ExitCode.OK, output, fatal=fatal, warnings=warnings)
        summary.exit_code = exit_code_for(summary)
        summary.seconds = time.perf_counter() - started
        if not settings.dry_run:
            try:
                state.finish_run(summary.counts)
                summary.report_path = write_report(summary, settings)
            except OutputError as exc:  # a full disk: the state rows written so far stand
                summary.fatal = summary.fatal or exc.one_line()
                summary.exit_code = exit_code_for(summary)
        return summary


def exit_code_for(summary: RunSummary) -> ExitCode:
    counts = summary.counts
    good = counts.get("converted", 0) + counts.get("unchanged", 0) + counts.get("planned", 0)
    bad = counts.get("failed", 0) + counts.get("review", 0)
    if summary.fatal:
        return ExitCode.FATAL
    if not good and not bad and not counts.get("skipped", 0):
        return ExitCode.NOTHING_FOUND  # nothing that is an image
    if bad and not good:
        return ExitCode.FATAL
    if bad:
        return ExitCode.SOME_FAILED
    return ExitCode.OK


def _held_results(held: list[FoundInput], state: StateStore) -> list[FileResult]:
    """Inputs outside `only` that wait for a person keep their place in the review list."""
    out = []
    for f in held:
        rec = state.get(str(f.path))
        if rec is not None and rec.status == "review":
            out.append(FileResult(str(f.path), f.rel, "review", rec.reason, rec.message,
                                  labels=rec.labels, content_hash=rec.content_hash))
    return out


def _stale_decisions(analysed: list[Analysed], decisions: DecisionBook) -> list[FileResult]:
    """A person's decision about content that has changed since is ignored, and said so."""
    out = []
    for a in analysed:
        digest = a.plan_input.content_hash if a.plan_input else (a.error.content_hash if a.error else "")
        if decisions.is_stale(a.found_path, digest):
            out.append(FileResult(a.found_path, a.rel, "warning", "decision-stale",
                                  "the file changed since a person decided its labels; "
                                  "the decision is ignored"))
    return out


def _triage(found: list[FoundInput], state: StateStore, key: str, force: bool,
            output: Path) -> tuple[list[FoundInput], list[tuple[FoundInput, Any]]]:
    todo: list[FoundInput] = []
    unchanged = []
    done = {} if force else state.done_records()
    for f in found:
        rec = None if f.problem else done.get(str(f.path))
        if rec is not None and rec.status == "done" and rec.settings == key:
            try:
                st = f.path.stat()
            except OSError:
                todo.append(f)
                continue
            if (st.st_size == rec.size and st.st_mtime_ns == rec.mtime_ns
                    and all((output / o).exists() for o in rec.outputs)):
                unchanged.append((f, rec))
                continue
        todo.append(f)
    return todo, unchanged


def _dedupe(ok: list[Analysed], state: StateStore, key: str, results: list[FileResult],
            force: bool) -> list[Analysed]:
    """An input whose content was converted already (touched, or moved) is not converted twice."""
    out = []
    seen: dict[str, Analysed] = {}
    for a in ok:
        assert a.plan_input is not None
        h = a.plan_input.content_hash
        prev = None if force else state.done_by_hash(h, key)
        if prev is not None and Path(prev.path).exists() and prev.path != a.found_path:
            results.append(FileResult(a.found_path, a.rel, "unchanged", "duplicate",
                                      f"same content as {prev.rel}, converted already",
                                      prev.outputs, prev.labels, h))
            continue
        if prev is not None and prev.path == a.found_path and all(
                (state.output / o).exists() for o in prev.outputs):
            state.put(path=a.found_path, rel=a.rel, size=a.size, mtime_ns=a.mtime_ns,
                      content_hash=h, settings=key, status="done", outputs=prev.outputs,
                      labels=prev.labels, plan_input=a.plan_input)
            results.append(FileResult(a.found_path, a.rel, "unchanged", "touched",
                                      "content unchanged", prev.outputs, prev.labels, h))
            continue
        if h in seen:
            results.append(FileResult(a.found_path, a.rel, "unchanged", "duplicate",
                                      f"same content as {seen[h].rel} in this batch", [], {}, h))
            continue
        seen[h] = a
        out.append(a)
    return out


def _earlier_inputs(state: StateStore, now: set[str], found: list[FoundInput]) -> list[PlanInput]:
    """Inputs converted by earlier runs, so that new ones join their studies and series and
    continue their numbering."""
    present = {str(f.path) for f in found}
    out = []
    for rec in state.all_done():
        if rec.path in now or rec.path not in present or rec.plan_input is None:
            continue
        try:
            item = pickle.loads(rec.plan_input)
        except Exception:
            continue
        out.append(item)
    return out


def _assign_names(plans: list[InstancePlan], settings: ConvertSettings, output: Path) -> list[WriteJob]:
    taken: set[str] = set()
    jobs = []
    for plan in plans:
        dests = []
        item = plan.input
        n_instances = len(plan.page_uids) or 1
        for i in range(n_instances):
            fields = {
                "PatientID": item.patient.patient_id or "NOID",
                "PatientName": item.patient.patient_name or "NONAME",
                "StudyDate": plan.study_date or "NODATE",
                "StudyID": plan.study_id,
                "StudyKey": plan.study_uid[-8:],
                "SeriesNumber": plan.series_number,
                "SeriesKey": plan.series_uid[-8:],
                "Modality": plan.modality,
                "InstanceNumber": plan.instance_number + i,
                "SOPInstanceUID": plan.page_uids[i] if plan.page_uids else plan.sop_uid,
                "protocol": item.labels.value("protocol") or "NOPROTOCOL",
                "source": Path(item.rel).stem,
                "source_rel": str(Path(item.rel).with_suffix("")),
                "page": f"_p{i + 1}" if i else "",
            }
            rel = naming.render(settings.name_template, fields)
            n = 2
            cand = rel
            while str(cand).lower() in taken:  # case-insensitive file systems exist
                cand = naming.with_suffix_number(rel, n)
                n += 1
            taken.add(str(cand).lower())
            dests.append(str(cand))
        jobs.append(WriteJob(plan, dests, str(output), settings.on_collision, settings.fsync))
    return jobs


def write_report(summary: RunSummary, settings: ConvertSettings) -> Path:
    """`OUT/orthovision-report.json` (this run) and `OUT/orthovision-review.csv` (to check)."""
    import csv

    out = summary.output
    report = {
        "tool": "orthovision-cli",
        "exit_code": int(summary.exit_code),
        "fatal": summary.fatal,
        "counts": summary.counts,
        "seconds": round(summary.seconds, 3),
        "warnings": summary.warnings,
        "files": [r.as_dict() for r in sorted(summary.results, key=lambda r: r.rel)],
    }
    path = out / "orthovision-report.json"
    tmp = path.with_name(path.name + ".tmp")
    rpath = out / "orthovision-review.csv"
    try:
        # One file per line, each by the C encoder (an indented dump runs in pure Python).
        files = report.pop("files")
        head = json.dumps(report)[:-1]
        body = ",\n".join(json.dumps(f) for f in files)  # type: ignore[attr-defined]
        tmp.write_text(f'{head}, "files": [\n{body}\n]}}\n')
        os.replace(tmp, path)
        review = [r for r in summary.results if r.status == "review"]
        if review:
            with rpath.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["input", "reason", "message"])
                for r in review:
                    w.writerow([r.path, r.reason, r.message])
        elif rpath.exists():
            rpath.unlink()
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write the report {path}: {exc.strerror or exc}",
                          path=path) from exc
    return path

