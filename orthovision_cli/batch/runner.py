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
from collections import deque
from collections.abc import Collection, Iterator
from concurrent.futures import Executor
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..config import ConvertSettings
from ..decisions import DecisionBook
from ..defaults import TMP_PREFIX
from ..dicom.plan import UNKNOWN_PATIENT_GROUP
from ..errors import ExitCode, OutputError
from ..manifest import UserInput
from ..memory import parse_size
from ..types import EventKind, FileStatus
from . import output_check, tasks
from .ahead import Ahead, never_seen
from .archives import ArchiveLimits, clean_archives, expand_archives
from .cards import apply_cards, visit_inputs
from .commits import Committer, remove_temp_files
from .crashes import REASON as CRASHED
from .crashes import Workers, skip_crashed
from .parts import PART_INPUTS, Run, plan_part, split_parts
from .pool import EarlyWorkers, early_executor, label_sources, make_executor, pmap
from .record import Recorder, clear_pending, planned_results, put_row, write_weight
from .report import run_exit_code, write_report
from .results import (
    Analysed,
    Event,
    FileResult,
    ResultLog,
    RunSummary,
    ignore_event,
    unfinished_results,
)
from .resume import dedupe, held_results, settings_key, triage
from .sharing import Sharing, in_input_order
from .state import StateStore
from .supersede import Superseder, own_outputs
from .user import build_user_input, unmatched_manifest_rows
from .walk import FoundInput, FoundList, find_inputs

if TYPE_CHECKING:
    from .record import WriteJob

__all__ = ["Analysed", "Confirm", "Event", "FileResult", "RunSummary", "run_convert"]


class Confirm(Protocol):
    """`convert --confirm`: a person sees each analysed file, and may change what is planned."""

    def begin(self, todo: list[FoundInput]) -> None:
        """The inputs about to be analysed (to offer "same for the next N files")."""

    def __call__(self, a: Analysed) -> Analysed: ...


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

    def upgrading(done: int, total: int) -> None:
        emit(EventKind.UPGRADING, done, total, None)

    with StateStore(output, on_upgrade=upgrading) as state:
        # A walk of the whole output only after a run that did not end as it should (killed: its
        # temp files are left); a run that stops on an error removes its own (issue 25).
        if not state.last_run_finished():
            remove_temp_files(output, TMP_PREFIX)
        state.start_run(argv or [])
        # Results go to a log on disk as they come (issue 25); the child writes in it too.
        key, log = settings_key(settings), ResultLog(state.dir)
        check = None if settings.force else output_check.start(state, output, key, log.fileno())
        # A large state (the check started): a nightly run; its workers start now.
        early = early_executor(settings, user) if check is not None else None
        try:
            return _run(settings, user, state, output, key, log, started, emit, check, early, only, confirm)
        finally:
            if early is not None:  # shut down by _convert already where there was work
                early.drop()
            if check is not None:  # asked by the triage already where the run got so far
                check.stop()


def _run(
    settings: ConvertSettings,
    user: UserInput,
    state: StateStore,
    output: Path,
    key: str,
    results: ResultLog,
    started: float,
    emit: Event,
    check: output_check.OutputCheck | None,
    early: EarlyWorkers | None,
    only: Collection[str] | None,
    confirm: Confirm | None,
) -> RunSummary:
    found = _find(settings, output, state)
    notes = unmatched_manifest_rows(settings, user, found, emit)
    if not found:
        return RunSummary([], ExitCode.NOTHING_FOUND, output, seconds=time.perf_counter() - started)
    if early is not None and check is not None and len(found) > check.rows:
        early.begin()  # more inputs than the state has rows: new ones for sure, load now
    if check is not None:  # the second process triages while the workers load
        check.ask(found.columns(), PART_INPUTS)
    ahead = None  # new inputs analysed during the triage: not for a person's choice of inputs
    if early is not None:
        # The workers load the stages where there is work: at once for inputs the state never
        # saw (its first answer), else once the triage leaves some; a nightly run that finds
        # nothing new never loads them (0.3 s of CPU a worker).
        new = never_seen(found, state, PART_INPUTS, check)
        if new:
            early.begin()
            if only is None and confirm is None:
                ahead = Ahead(early.workers, tasks.analyse, new)
    todo = triage(found, state, key, settings.force, output, results, check)
    if not settings.force:  # inputs that crashed a worker before wait for --force
        todo, poison = skip_crashed(todo, state.records_with_reason(CRASHED))
        results.extend(poison)
    if only is not None:
        only = set(only) | visit_inputs(state)  # cards name visits: always read
        results.extend(held_results(todo.where(lambda p: p not in only), state))
        todo = todo.where(only.__contains__)
    emit(EventKind.FOUND, len(todo), len(found), None)
    if todo:
        # Found and not converted now: what earlier runs' rows may still be planned with.
        unchanged = set(found.paths()).difference(todo.paths()) if len(todo) < len(found) else set()
        del found  # and `_convert` lets each part's inputs go once done (issue 25)
        pool = None
        if early is not None:
            early.begin()  # the triage left changed inputs (new ones opened it already)
            pool = early.workers
        summary = _convert(settings, user, state, key, unchanged, todo, results, emit, confirm, pool, ahead)
    else:  # nothing new: the stages (numpy, Pillow, pydicom) are never loaded
        summary = RunSummary(results, ExitCode.OK, output)
        summary.exit_code = run_exit_code(summary)
    summary.seconds = time.perf_counter() - started
    summary.warnings[:0] = notes + user.notices
    summary.notices[:0] = user.notices
    if not settings.dry_run:
        try:
            state.finish_run(summary.counts)
            summary.report_path = write_report(summary)
        except OutputError as exc:  # a full disk: the state rows written so far stand
            summary.fatal = summary.fatal or exc.one_line()
            summary.exit_code = run_exit_code(summary)
    # Extracted zip members are temporary; those a person must review stay for the page.
    review = {r.path for r in summary.of_status(FileStatus.REVIEW)}
    clean_archives(state.dir / "archives", review)
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


def _find(settings: ConvertSettings, output: Path, state: StateStore) -> FoundList:
    # Absolute paths: the state must know an input again whatever the working folder.
    roots = [p.absolute() for p in settings.inputs]
    found = find_inputs(roots, settings.include, settings.exclude, skip_dirs=[output])
    size = parse_size(settings.zip_max_size, "--zip-max-size")
    limits = ArchiveLimits(size, settings.zip_max_members, settings.zip_max_ratio)
    return expand_archives(found, state.dir / "archives", settings.include, settings.exclude, limits)


def _convert(
    settings: ConvertSettings,
    user: UserInput,
    state: StateStore,
    key: str,
    unchanged: set[str],
    todo: FoundList,
    results: ResultLog,
    emit: Event,
    confirm: Confirm | None = None,
    started: Workers | None = None,
    ahead: Ahead | None = None,
) -> RunSummary:
    """analyse → plan → write, in the pool (`started` if given), a part at a time; a run that must
    stop (a full disk) stops here. Takes `todo` over: it is emptied, and each part let go once
    done."""
    if started is None:  # numpy, Pillow, pydicom: only with work, before the fork (shared)
        tasks.load_stages()
    # On a cluster the images are in the workers' memory, bounded by Dask's own per-worker
    # limit, not in this machine's.
    budget = 0 if settings.cluster else settings.memory_budget
    run = Run(settings, state, key, results, emit, budget, total=len(todo), unchanged=unchanged, ahead=ahead)
    remote = bool(settings.remote)
    # One part where the whole batch must be seen at once: a person answers in the order found
    # (--confirm), a dry run stores no plan for the next part to be numbered after, and remote
    # classification swaps its thread pool for worker processes once.
    whole = confirm is not None or settings.dry_run or remote
    parts = deque([todo[:]]) if whole else split_parts(todo, PART_INPUTS)
    todo.clear()
    part: list[FoundInput] = []
    fatal = ""
    pool: Executor | Workers | None = started or _executor(settings, user, run.total, io_bound=remote)
    superseder = Superseder(state)
    try:
        while parts:
            part = list(parts.popleft())  # this part's inputs made; the others stay compact
            analysed = _analyse_all(run, pool, part, confirm)
            for a in apply_cards(analysed, settings.visit_gap):  # two cards for one visit: review
                _record_end(run, a)
            if remote and pool is not None:  # writing is local work: worker processes
                pool.shutdown(wait=True)
                pool = _executor(settings, user, run.total)
            same: list[FileResult] = []  # copies of content converted already, touched files
            ok = dedupe(
                [a for a in analysed if a.plan_input is not None],
                state,
                key,
                same,
                settings.force,
                record=not settings.dry_run,
                seen=run.seen,
            )
            results.extend(same)
            del analysed  # those ended are in the results; `ok` holds the others until written
            jobs = plan_part(run, ok)
            if settings.dry_run:
                results.extend(planned_results(jobs))
            else:
                _write_all(run, pool, ok, jobs, superseder)
            part = []
    except OutputError as exc:
        fatal = exc.one_line()
    except KeyboardInterrupt:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    if fatal or (isinstance(pool, Workers) and pool.broken) or settings.cluster:
        # Files written but not committed when the run had to stop, or by tasks killed with a
        # crashing neighbour (and done again alone), or by a cluster's worker host lost
        # mid-write: never leave them (the next run looks only after a run killed).
        remove_temp_files(state.output, TMP_PREFIX)
    if fatal:  # every input in the report: those the stop left unwritten say so
        results.extend(unfinished_results([*part, *(f for p in parts for f in p)], results))
    # About the run, not one file: in the report's warnings and the summary (RunSummary.notices).
    run.notices.extend(
        run.identity.warnings(lambda groups: state.groups_besides(UNKNOWN_PATIENT_GROUP, groups))
    )
    summary = RunSummary(
        results,
        ExitCode.OK,
        state.output,
        fatal=fatal,
        warnings=run.warnings + run.notices,
        notices=run.notices,
        visits=run.visits,
    )
    summary.exit_code = run_exit_code(summary)
    if settings.require_complete and any(v["missing"] for v in run.visits):
        summary.exit_code = max(summary.exit_code, ExitCode.SOME_FAILED)
    return summary


def _executor(
    settings: ConvertSettings, user: UserInput, n_items: int, io_bound: bool = False
) -> Executor | Workers | None:
    """A Dask cluster's executor with `--cluster` (its remote classification stays here, in
    threads), else this machine's pool."""
    if settings.cluster and not io_bound:
        if settings.use_models:
            label_sources(settings)  # fail fast on a broken pack, before the cluster starts
        from .cluster import DaskExecutor  # distributed: only for --cluster

        return DaskExecutor(settings, user)
    return make_executor(settings, user, n_items, io_bound)


def _analyse_all(
    run: Run, pool: Executor | Workers | None, todo: list[FoundInput], confirm: Confirm | None
) -> list[Analysed]:
    """Each input analysed in the pool; those that end here get their state row and result."""
    settings, state = run.settings, run.state
    analysed = []
    weigh = tasks.analyse_weight(settings)
    if confirm is not None:
        confirm.begin(todo)
    done, rest = run.ahead.take(todo) if run.ahead is not None else ([], todo)
    stream: Iterator[Analysed] = chain(done, pmap(pool, tasks.analyse, rest, weigh, run.budget))
    if confirm is not None:  # a person answers in the order the files were found
        stream = in_input_order(stream, [f.path_str for f in todo])
    share = Sharing(todo)
    for a in stream:
        a = share(a)
        if confirm is not None:
            a = confirm(a)
        analysed.append(a)
        if a.error is not None:
            _record_end(run, a)
        run.analysed += 1
        run.emit(EventKind.ANALYSED, run.analysed, run.total, a.error)
    # Results come in completion order, which varies between runs (and between the pool and a
    # cluster); which of two identical files is converted must not.
    analysed.sort(key=lambda a: share.order.get(a.found_path, 0))
    for note in tasks.stale_decisions(analysed, DecisionBook(state.output)):
        run.warnings.append(f"{note.rel}: {note.message}")
        run.emit(EventKind.WARNING, 0, 0, note)
    return analysed


def _record_end(run: Run, a: Analysed) -> None:
    """An input whose run ends at analysis: its result, and its state row."""
    assert a.error is not None
    run.results.append(a.error)
    if run.settings.dry_run:
        return
    # Its earlier instances (if any) stand until it is converted anew: the row keeps them, so
    # that the conversion that replaces them supersedes them.
    put_row(run.state, run.key, a, a.error, own_outputs(run.state.get(a.found_path)), converted=False)


def _write_all(
    run: Run,
    pool: Executor | Workers | None,
    ok: list[Analysed],
    jobs: list[WriteJob],
    superseder: Superseder,
) -> None:
    """Each job written in the pool; the group committer makes finished files durable and
    visible in batches while the workers go on, and each gets its state row. Empties `ok` and
    `jobs` (each is dropped once recorded)."""
    record = Recorder(run.state, run.key, ok, run.results, run.emit, run.total, superseder)
    record.done = run.written
    committer = Committer(fsync=run.settings.fsync)
    # The heaviest first (turns and decodes before pass-through copies, by their memory
    # estimate, which grows with the work): one started last would keep a worker busy while the
    # others idle. Names and UIDs are planned already, so the order changes nothing written.
    todo = deque(sorted((record.prepare(j) for j in jobs), key=write_weight, reverse=True))
    # Taken over: each input's analysis, plan and job are let go once it is recorded, so the
    # memory they hold shrinks as the results grow (issue 25), instead of adding up.
    ok.clear()
    jobs.clear()
    drained = (todo.popleft() for _ in range(len(todo)))  # each handed on, not held here
    try:
        for res in pmap(pool, tasks.write_job, drained, write_weight, run.budget):
            if res.pending:
                committer.submit(res, res.pending)
            else:
                record(res)
            if done := committer.finished():
                with run.state.together():  # the rows of files committed together
                    for item in done:
                        record(clear_pending(item))
    finally:
        # Also when the run must stop: what reached its name is in the state.
        if done := committer.close():
            with run.state.together():
                for item in done:
                    record(clear_pending(item))
        run.written = record.done
    if committer.error is not None:
        raise committer.error
