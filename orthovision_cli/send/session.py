"""Send instances to every destination (`SendSession`), and `orthovision send` (`run_send`): every
instance of a finished output tree not yet stored at each destination.

Per destination a `DestinationWorker` takes the queue; a destination that turns out unusable
stops there, the other destinations go on. Every outcome goes to the ledger as it arrives.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from ..batch.supersede import SupersededRecord, read_superseded
from ..errors import DestinationError, UsageError
from .destinations import Destination, parse_destination
from .dimse import Contexts
from .instances import Instance, NotDicom, read_instance
from .ledger import STORED, Ledger, Outcome
from .options import SendOptions
from .results import InstanceResult, OnResult, SendSummary
from .scan import find_instances
from .superseded import REJECTED, RejectionNote, rejection_notes, replaced_by, where_delivered
from .worker import DestinationWorker


class SendSession:
    """Send instances to destinations; the ledger decides what is still to send.

    Use as a context manager: `probe()` fails fast on unusable destinations, `submit()` queues
    instances (from any thread), leaving the context waits for every outcome.
    """

    def __init__(
        self,
        output: Path,
        destinations: Iterable[str],
        opts: SendOptions,
        on_result: OnResult | None = None,
        argv: list[str] | None = None,
    ) -> None:
        opts.check()
        self.output = output
        self.dests = _unique([parse_destination(d) for d in destinations])
        if not self.dests:
            raise UsageError("give at least one destination with --to")
        self.opts = opts
        self.on_result = on_result or (lambda r: None)
        self.argv = argv or []
        self.summary = SendSummary()
        self.ledger = Ledger(output)
        self.workers: dict[str, DestinationWorker] = {}
        self._stored: dict[str, set[str]] = {}
        self._queued: dict[str, set[str]] = {}
        self._mutex = threading.Lock()
        self._started = time.perf_counter()
        self._seen: set[str] = set()
        # (rejection note UID, destination) -> the superseded instances it rejects there.
        self._notes: dict[tuple[str, str], list[SupersededRecord]] = {}

    def __enter__(self) -> SendSession:
        self.ledger.__enter__()
        self.ledger.start_run(self.argv)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc and exc[0] is not None:  # interrupted: fail what is queued at once, in one line
                for w in self.workers.values():
                    w.error = w.error or DestinationError("the run was interrupted", reason="interrupted")
            for w in self.workers.values():
                w.close()
            for key, w in self.workers.items():
                if w.error is not None and key not in self.summary.destination_errors:
                    self.summary.destination_errors[key] = w.error.one_line()
                line = w.refused_line()
                if line is not None:
                    self.summary.warnings.append(f"{key}: {line}")
            self.summary.seconds = time.perf_counter() - self._started
            self.ledger.finish_run(json.dumps(self.summary.counts))
        finally:
            self.ledger.__exit__()

    def start(self, contexts: Contexts, instances: list[Instance] | None = None) -> None:
        """Probe every destination (C-ECHO, or a QIDO-RS query) and start its workers; with
        `opts.verify` (and `instances`), reconcile the ledger with what the peer holds."""
        for dest in self.dests:
            worker = DestinationWorker(dest, self.opts, self.ledger, contexts, self._record)
            try:
                worker.probe()
                if self.opts.verify and instances:
                    self._reconcile(worker, instances)
            except DestinationError as exc:
                self.summary.destination_errors[dest.key] = exc.one_line()
                if worker.stow is not None:
                    worker.stow.close()
                continue
            self._stored[dest.key] = set() if self.opts.force else self.ledger.stored_uids(dest.key)
            self._queued[dest.key] = set()
            self.workers[dest.key] = worker
            worker.start()

    def _reconcile(self, worker: DestinationWorker, instances: list[Instance]) -> None:
        key = worker.dest.key
        held = worker.held(instances)
        recorded = self.ledger.stored_uids(key)
        gone = {i.sop_uid for i in instances} & (recorded - held)
        self.ledger.forget(key, gone)  # recorded as stored, but the peer does not have them
        for inst in instances:
            if inst.sop_uid in held and inst.sop_uid not in recorded:
                self.ledger.record(
                    inst, key, Outcome(STORED, None, "held", "the destination already holds it")
                )

    def submit(self, inst: Instance) -> None:
        with self._mutex:
            self.summary.instances += inst.sop_uid not in self._seen
            self._seen.add(inst.sop_uid)
        for dest in self.dests:
            key = dest.key
            worker = self.workers.get(key)
            if worker is None:
                continue  # unusable from the start: reported once, as a destination error
            with self._mutex:
                if inst.sop_uid in self._queued[key]:
                    continue  # already queued in this run (convert --send, then the final sweep)
                self._queued[key].add(inst.sop_uid)
            if inst.sop_uid in self._stored[key]:
                self._emit(InstanceResult(inst.rel, inst.sop_uid, key, "unchanged"))
                continue
            worker.submit(inst)

    def submit_path(self, path: Path) -> None:
        """A file that just became durable (convert --send)."""
        rel = path.relative_to(self.output).as_posix()
        try:
            inst = read_instance(path, rel)
        except NotDicom as exc:
            with self._mutex:
                self.summary.unreadable.append(exc.one_line())
            return
        self.ledger.cache(inst)  # the final sweep then reads no header twice
        self.submit(inst)

    def _record(self, inst: Instance, dest: Destination, outcome: Outcome) -> None:
        self.ledger.record(inst, dest.key, outcome)
        self._emit(
            InstanceResult(inst.rel, inst.sop_uid, dest.key, outcome.status, outcome.reason, outcome.message)
        )
        for rec in self._notes.get((inst.sop_uid, dest.key), []):
            if outcome.stored:
                note = f"rejection note {inst.sop_uid} stored"
                self.ledger.record(
                    _as_instance(self.output, rec), dest.key, Outcome(REJECTED, None, REJECTED, note)
                )
                reason, message = where_delivered(REJECTED)
            else:
                reason, message = where_delivered("stored")
                message += f"; its rejection note failed: {outcome.reason}: {outcome.message}"
            self._superseded_result(rec, dest.key, reason, message)

    def prepare_notes(self, records: list[SupersededRecord]) -> list[RejectionNote]:
        """With `--reject-superseded`: for each destination, a rejection note per study for the
        superseded instances the ledger says it stored (sent once the destinations are up)."""
        if not self.opts.reject_superseded or not records:
            return []
        out: dict[str, RejectionNote] = {}
        for dest in self.dests:
            rows = self.ledger.rows(dest.key)
            delivered = [r for r in records if rows.get(r.sop_uid, ("",))[0] == STORED]
            notes, problems = rejection_notes(self.output, delivered)
            self.summary.warnings.extend(p for p in problems if p not in self.summary.warnings)
            for note in notes:
                self._notes[(note.instance.sop_uid, dest.key)] = note.rejects
                out[note.instance.sop_uid] = note
        return list(out.values())

    def report_superseded(self, records: list[SupersededRecord], notes: list[RejectionNote]) -> None:
        """Per usable destination, where each superseded instance stands (never sent, delivered,
        rejected); the rejection notes queued, whose outcome then says it (`_record`)."""
        for key, worker in self.workers.items():
            rows = self.ledger.rows(key)
            pending = {r.sop_uid for (uid, k), recs in self._notes.items() if k == key for r in recs}
            for rec in records:
                if rec.sop_uid in pending:
                    continue
                reason, message = where_delivered(rows.get(rec.sop_uid, ("",))[0])
                self._superseded_result(rec, key, reason, message)
            for note in notes:
                if (note.instance.sop_uid, key) in self._notes:
                    with self._mutex:
                        self._queued[key].add(note.instance.sop_uid)
                    worker.submit(note.instance)

    def _superseded_result(self, rec: SupersededRecord, key: str, reason: str, message: str) -> None:
        text = f"{message}; replaced by {replaced_by(rec)}"
        self._emit(InstanceResult(rec.rel, rec.sop_uid, key, "superseded", reason, text))

    def _emit(self, res: InstanceResult) -> None:
        with self._mutex:
            self.summary.results.append(res)
        self.on_result(res)


def _as_instance(output: Path, rec: SupersededRecord) -> Instance:
    """A superseded instance as the ledger records it (its file is no longer in the tree)."""
    return Instance(
        output / rec.rel, rec.rel, rec.sop_class, rec.sop_uid, "", rec.study_uid, rec.series_uid, 0, 0
    )


def _unique(dests: list[Destination]) -> list[Destination]:
    seen: dict[str, Destination] = {}
    for d in dests:
        seen.setdefault(d.key, d)
    return list(seen.values())


def run_send(
    output: Path,
    destinations: Iterable[str],
    opts: SendOptions,
    on_result: OnResult | None = None,
    argv: list[str] | None = None,
) -> SendSummary:
    """`orthovision send`: every instance under `output` not yet stored at each destination."""
    if not output.is_dir():
        raise UsageError(f"{output} is not a folder (give the output folder of a conversion)")
    if not (output / ".orthovision").is_dir() and not _holds_dicom(output):
        # An input folder of photos: say so before the ledger is written into it.
        raise UsageError(f"no DICOM file in {output}: give the output folder of a conversion (-o OUT)")
    session = SendSession(output, destinations, opts, on_result, argv)
    with session:
        instances, bad = find_instances(output, session.ledger)
        session.summary.unreadable = bad
        records = read_superseded(output)
        # Never sent, even where a copy of a superseded file came back into the tree.
        gone = {r.sop_uid for r in records}
        instances = [i for i in instances if i.sop_uid not in gone]
        notes = session.prepare_notes(records)
        if instances or records:
            session.start(Contexts.for_instances([*instances, *(n.instance for n in notes)]), instances)
            for inst in instances:
                session.submit(inst)
            session.report_superseded(records, notes)
    return session.summary


def _holds_dicom(folder: Path) -> bool:
    """Whether any file below `folder` is DICOM (the preamble's `DICM`); stops at the first."""
    for path in folder.rglob("*"):
        try:
            if path.is_file():
                with path.open("rb") as f:
                    if f.read(132)[128:132] == b"DICM":
                        return True
        except OSError:
            continue
    return False
