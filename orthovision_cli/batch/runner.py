"""Run a conversion batch: find → analyse (probe, classify) → plan → write → report.

Analysis and writing run in worker processes (`--jobs`, `pool`); the main process alone talks to
the state store, so a crash at any moment leaves either a finished output with its state row, or
a temp file that the next run deletes and an input that it converts again (same UIDs, same name).

Each stage has its module: `walk`/`archives` (find), `resume` (what a re-run skips), `analyse`,
`dicom.plan` (plan), `write`, `report`. `run_convert` below is the flow and nothing else.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection
from concurrent.futures import Executor
from pathlib import Path

from .. import naming
from ..config import ConvertSettings
from ..decisions import DecisionBook
from ..dicom.plan import plan_batch
from ..errors import ExitCode, OutputError
from ..manifest import UserInput
from ..types import EventKind
from .archives import expand_archives
from .commits import Committer
from .crashes import REASON as CRASHED
from .crashes import Workers, skip_crashed
from .pool import make_executor, pmap
from .report import run_exit_code, write_report
from .results import Analysed, Event, FileResult, RunSummary, ignore_event
from .resume import dedupe, earlier_inputs, held_results, settings_key, triage
from .state import StateStore, remove_temp_files
from .user import build_user_input
from .walk import FoundInput, find_inputs

__all__ = ["Analysed", "Confirm", "Event", "FileResult", "RunSummary", "run_convert"]

# `convert --confirm`: a person sees each analysed file, and may change what is planned.
Confirm = Callable[[Analysed], Analysed]

TMP_PREFIX = ".orthovision-tmp-"  # as dicom.writer.TMP_PREFIX (kept light to import)


def run_convert(
    settings: ConvertSettings,
    on_event: Event | None = None,
    argv: list[str] | None = None,
    only: Collection[str] | None = None,
    confirm: Confirm | None = None,
) -> RunSummary:
    """Convert a batch. `only` (absolute input paths) limits the work to those inputs (the
    review page's decided files, a hot folder's settled files); the others found keep their
    recorded status in the report. `confirm` sees each analysed file before it is planned
    (`convert --confirm`: a person at the terminal)."""
    started = time.perf_counter()
    settings.validate()
    emit: Event = on_event or ignore_event
    user = build_user_input(settings)
    output = _output_folder(settings)
    with StateStore(output) as state:
        remove_temp_files(output, TMP_PREFIX)
        state.start_run(argv or [])
        found = _find(settings, output, state)
        if not found:
            return RunSummary([], ExitCode.NOTHING_FOUND, output, seconds=time.perf_counter() - started)
        key = settings_key(settings)
        todo, results = triage(found, state, key, settings.force, output)
        if not settings.force:  # inputs that crashed a worker before wait for --force
            todo, poison = skip_crashed(todo, state.records_with_reason(CRASHED))
            results.extend(poison)
        if only is not None:
            results.extend(held_results([f for f in todo if str(f.path) not in only], state))
            todo = [f for f in todo if str(f.path) in only]
        emit(EventKind.FOUND, len(todo), len(found), None)
        if todo:
            summary = _convert(settings, user, state, key, found, todo, results, emit, confirm)
        else:  # nothing new: the stages (numpy, Pillow, pydicom) are never loaded
            summary = RunSummary(results, ExitCode.OK, output)
            summary.exit_code = run_exit_code(summary)
        summary.seconds = time.perf_counter() - started
        if not settings.dry_run:
            try:
                state.finish_run(summary.counts)
                summary.report_path = write_report(summary)
            except OutputError as exc:  # a full disk: the state rows written so far stand
                summary.fatal = summary.fatal or exc.one_line()
                summary.exit_code = run_exit_code(summary)
        return summary


def _output_folder(settings: ConvertSettings) -> Path:
    output = settings.output
    assert output is not None
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create output folder {output}: {exc.strerror or exc}", path=output
        ) from exc
    if not os.access(output, os.W_OK):
        raise OutputError(f"output folder {output} is not writable", path=output)
    return output


def _find(settings: ConvertSettings, output: Path, state: StateStore) -> list[FoundInput]:
    # Absolute paths: the state must know an input again whatever the working folder.
    roots = [p.absolute() for p in settings.inputs]
    found = find_inputs(roots, settings.include, settings.exclude, skip_dirs=[output])
    return expand_archives(found, state.dir / "archives", settings.include, settings.exclude)


def _convert(
    settings: ConvertSettings,
    user: UserInput,
    state: StateStore,
    key: str,
    found: list[FoundInput],
    todo: list[FoundInput],
    results: list[FileResult],
    emit: Event,
    confirm: Confirm | None = None,
) -> RunSummary:
    """analyse → plan → write, in the pool; a run that must stop (a full disk) stops here."""
    # numpy, Pillow, pydicom: loaded only for a run with work, and before the pool forks (the
    # workers share them).
    from . import analyse, write

    output = state.output
    fatal = ""
    warnings: list[str] = []
    remote = bool(settings.remote)
    # On a cluster the images are in the workers' memory, bounded by Dask's own per-worker
    # limit, not in this machine's.
    budget = 0 if settings.cluster else settings.memory_budget
    pool: Executor | Workers | None = make_executor(settings, user, len(todo), io_bound=remote)
    try:
        analysed = []
        weigh = analyse.analyse_weight(settings)
        for i, a in enumerate(pmap(pool, analyse.analyse, todo, weigh, budget), start=1):
            if confirm is not None:
                a = confirm(a)
            analysed.append(a)
            if a.error is not None:
                results.append(a.error)
                if not settings.dry_run:
                    state.put(
                        path=a.found_path,
                        rel=a.rel,
                        size=a.size,
                        mtime_ns=a.mtime_ns,
                        content_hash=a.error.content_hash,
                        settings=key,
                        status=str(a.error.status),
                        reason=a.error.reason,
                        message=a.error.message,
                        labels=a.error.labels,
                    )
            emit(EventKind.ANALYSED, i, len(todo), a.error)
        # Results come in completion order, which varies between runs (and between the pool and
        # a cluster); which of two identical files is converted must not.
        order = {str(f.path): i for i, f in enumerate(todo)}
        analysed.sort(key=lambda a: order.get(a.found_path, 0))
        for note in analyse.stale_decisions(analysed, DecisionBook(output)):
            warnings.append(f"{note.rel}: {note.message}")
            emit(EventKind.WARNING, 0, 0, note)
        if remote and pool is not None:  # writing is local work: worker processes
            pool.shutdown(wait=True)
            pool = make_executor(settings, user, len(todo))

        ok = dedupe([a for a in analysed if a.plan_input is not None], state, key, results, settings.force)
        # Earlier inputs are needed only to number new ones among them.
        earlier, unreadable = earlier_inputs(state, {a.found_path for a in ok}, found) if ok else ([], [])
        warnings.extend(unreadable)
        new = {a.plan_input.key: a.rel for a in ok if a.plan_input is not None}
        plans = plan_batch([a.plan_input for a in ok if a.plan_input is not None] + earlier, state.secret())
        plans = [p for p in plans if new.get(p.input.key) == p.input.rel]
        jobs = [
            write.WriteJob(plan, dests, str(output), settings.on_collision, settings.fsync)
            for plan, dests in zip(plans, naming.assign_names(plans, settings.name_template), strict=True)
        ]

        if settings.dry_run:
            results.extend(write.planned_results(jobs))
        else:
            record = write.Recorder(state, key, ok, results, emit, len(jobs))
            # Group commit: a thread makes finished files durable and visible in batches
            # while the workers go on with the next ones.
            committer = Committer(fsync=settings.fsync)
            try:
                for res in pmap(pool, write.write_job, jobs, write.write_weight, budget):
                    if res.pending:
                        committer.submit(res, res.pending)
                    else:
                        record(res)
                    for done in committer.finished():
                        record(write.clear_pending(done))
            finally:
                # Also when the run must stop: what reached its name is in the state.
                for done in committer.close():
                    record(write.clear_pending(done))
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
    if fatal or (isinstance(pool, Workers) and pool.broken):
        # Files written but not committed when the run had to stop, or by tasks killed with a
        # crashing neighbour (and done again alone): never leave them.
        remove_temp_files(output, TMP_PREFIX)
    summary = RunSummary(results, ExitCode.OK, output, fatal=fatal, warnings=warnings)
    summary.exit_code = run_exit_code(summary)
    return summary
