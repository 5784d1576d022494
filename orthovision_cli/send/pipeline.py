"""Feed instances to every destination: from a finished output tree (`orthovision send`) or
from a running conversion (`convert --send`: each instance once it is durable).

Per destination, `associations` worker threads share one queue; a DIMSE worker keeps its
association open across instances, a STOW-RS worker takes what is queued, up to one batch, per
request. A destination that turns out unusable (unreachable after the retries, association
rejected, credentials refused) stops there: its remaining instances are failed with that reason
at once, the other destinations go on. Every outcome goes to the ledger as it arrives.
"""

from __future__ import annotations

import json
import queue
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..dicom.plan import (
    MF_GRAYSCALE_BYTE_SC,
    MF_GRAYSCALE_WORD_SC,
    MF_TRUE_COLOR_SC,
    SECONDARY_CAPTURE,
    VL_PHOTOGRAPHIC,
)
from ..errors import DestinationError, DestinationUnreachable, ExitCode, UsageError
from ..remote.poll import RETRY_BACKOFF, Backoff
from .destinations import Destination, check_ae_title, parse_destination
from .dimse import Contexts, DimseAssociation, DimsePeer
from .instances import Instance, NotDicom, is_part10, read_instance, walk_files
from .ledger import FAILED, STORED, Ledger, Outcome
from .stow import StowPeer

# Every SOP class and transfer syntax the converter writes: what `convert --send` proposes,
# since it cannot know in advance which of them a run will produce.
WRITTEN_SOP_CLASSES = (
    VL_PHOTOGRAPHIC,
    SECONDARY_CAPTURE,
    MF_GRAYSCALE_BYTE_SC,
    MF_GRAYSCALE_WORD_SC,
    MF_TRUE_COLOR_SC,
)
WRITTEN_COMPRESSED = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")


@dataclass
class SendOptions:
    calling_ae: str = "ORTHOVISION"
    associations: int = 1
    batch: int = 20
    batch_mb: float = 32.0
    timeout: float = 30.0
    retries: int = 3
    verify: bool = False
    force: bool = False
    token: str | None = None
    basic: tuple[str, str] | None = None
    tls: ssl.SSLContext | None = None  # None: the system's CAs
    insecure: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    backoff: Backoff = RETRY_BACKOFF

    def check(self) -> None:
        check_ae_title(self.calling_ae, "--calling-ae")
        if self.associations < 1 or self.associations > 64:
            raise UsageError("--associations must be between 1 and 64")
        if self.batch < 1 or self.batch_mb <= 0:
            raise UsageError("--batch must be >= 1 and --batch-mb > 0")
        if self.timeout <= 0 or self.retries < 0:
            raise UsageError("--timeout must be > 0 and --retries >= 0")


@dataclass
class InstanceResult:
    rel: str
    sop_uid: str
    destination: str
    status: str  # stored, failed, unchanged (stored by an earlier run)
    reason: str = ""
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.rel,
            "sop_instance_uid": self.sop_uid,
            "destination": self.destination,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
        }


@dataclass
class SendSummary:
    results: list[InstanceResult] = field(default_factory=list)
    destination_errors: dict[str, str] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    instances: int = 0
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    @property
    def exit_code(self) -> ExitCode:
        counts = self.counts
        good = counts.get("stored", 0) + counts.get("unchanged", 0)
        bad = counts.get("failed", 0) + len(self.unreadable)
        if self.destination_errors:
            return ExitCode.DESTINATION
        if not self.instances and not self.unreadable:
            return ExitCode.NOTHING_FOUND
        if bad and not good:
            return ExitCode.FATAL
        return ExitCode.SOME_FAILED if bad else ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "exit_code": int(self.exit_code),
            "counts": self.counts,
            "instances": self.instances,
            "destination_errors": self.destination_errors,
            "unreadable": self.unreadable,
            "seconds": round(self.seconds, 3),
            "results": [r.as_dict() for r in self.results],
        }


OnResult = Callable[[InstanceResult], None]


class _Worker:
    """The queue and threads of one destination."""

    def __init__(
        self,
        dest: Destination,
        opts: SendOptions,
        ledger: Ledger,
        contexts: Contexts,
        record: Callable[[Instance, Destination, Outcome], None],
    ) -> None:
        self.dest = dest
        self.opts = opts
        self.ledger = ledger
        self.contexts = contexts
        self.record = record
        self.queue: queue.Queue[Instance | None] = queue.Queue()
        self.error: DestinationError | None = None
        self._threads: list[threading.Thread] = []
        self.dimse: DimsePeer | None = None
        self.stow: StowPeer | None = None
        if dest.kind == "dimse":
            self.dimse = DimsePeer(dest, calling_ae=opts.calling_ae, timeout=opts.timeout, tls=opts.tls)
        else:
            verify: bool | ssl.SSLContext = False if opts.insecure else (opts.tls or True)
            self.stow = StowPeer(
                dest,
                token=opts.token,
                basic=opts.basic,
                verify=verify,
                headers=opts.headers,
                timeout=opts.timeout,
                retries=opts.retries,
                backoff=opts.backoff,
            )

    def probe(self) -> None:
        if self.dimse is not None:
            self.dimse.echo()
        elif self.stow is not None:
            self.stow.probe()

    def held(self, instances: list[Instance]) -> set[str]:
        if self.dimse is not None:
            return self.dimse.held(instances)
        assert self.stow is not None
        return self.stow.held(instances)

    def start(self) -> None:
        target = self._run_dimse if self.dimse is not None else self._run_stow
        for n in range(self.opts.associations):
            t = threading.Thread(target=self._guard, args=(target,), name=f"send-{n}", daemon=True)
            t.start()
            self._threads.append(t)

    def submit(self, inst: Instance) -> None:
        self.queue.put(inst)

    def close(self) -> None:
        for _ in self._threads:
            self.queue.put(None)
        for t in self._threads:
            t.join()
        if self.stow is not None:
            self.stow.close()

    def _fail(self, inst: Instance) -> None:
        assert self.error is not None
        self.record(inst, self.dest, Outcome(FAILED, None, self.error.reason, self.error.message))

    def _guard(self, target: Callable[[], None]) -> None:
        try:
            target()
        except Exception as exc:  # a bug must not hang the queue: fail what is left, in one line
            self.error = self.error or DestinationError(
                f"{type(exc).__name__}: {exc}", reason="internal-error"
            )
            while (inst := self.queue.get()) is not None:
                self._fail(inst)

    def _run_dimse(self) -> None:
        assert self.dimse is not None
        assoc: DimseAssociation | None = None
        try:
            while (inst := self.queue.get()) is not None:
                if self.error is not None:
                    self._fail(inst)
                    continue
                outcome, assoc = self._store_dimse(inst, assoc)
                if outcome is None:
                    self._fail(inst)
                else:
                    self.record(inst, self.dest, outcome)
        finally:
            if assoc is not None:
                assoc.release()

    def _store_dimse(
        self, inst: Instance, assoc: DimseAssociation | None
    ) -> tuple[Outcome | None, DimseAssociation | None]:
        """Store one instance, reopening a lost association with backoff. (None, _) when the
        destination became unusable (self.error says why)."""
        assert self.dimse is not None
        delays = self.opts.backoff.delays()
        outcome: Outcome | None = None
        for attempt in range(self.opts.retries + 1):
            if self.error is not None:
                return None, assoc  # released by the caller
            if assoc is None or not assoc.alive:
                try:
                    assoc = self.dimse.open(self.contexts)
                except DestinationUnreachable as exc:
                    assoc = None
                    if attempt == self.opts.retries:
                        self.error = self.error or exc
                        return None, None
                    time.sleep(next(delays))
                    continue
                except DestinationError as exc:
                    self.error = self.error or exc
                    return None, None
            outcome = assoc.store(inst)
            if outcome.reason != "connection-lost":
                return outcome, assoc
            assoc.abort()
            assoc = None
            if attempt < self.opts.retries:
                time.sleep(next(delays))
        return outcome, assoc

    def _run_stow(self) -> None:
        assert self.stow is not None
        max_bytes = int(self.opts.batch_mb * 1024 * 1024)
        stop = False
        while not stop:
            first = self.queue.get()
            if first is None:
                return
            batch, size = [first], first.size
            while len(batch) < self.opts.batch and size < max_bytes:
                try:
                    nxt = self.queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if batch and size + nxt.size > max_bytes:
                    self._send_stow(batch)
                    batch, size = [], 0
                batch.append(nxt)
                size += nxt.size
            self._send_stow(batch)

    def _send_stow(self, batch: list[Instance]) -> None:
        assert self.stow is not None
        if not batch:
            return
        if self.error is None:
            try:
                outcomes = self.stow.store(batch)
            except DestinationError as exc:
                self.error = self.error or exc
            else:
                for inst in batch:
                    self.record(inst, self.dest, outcomes[inst.sop_uid])
                return
        for inst in batch:
            self._fail(inst)


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
        self.workers: dict[str, _Worker] = {}
        self._stored: dict[str, set[str]] = {}
        self._queued: dict[str, set[str]] = {}
        self._mutex = threading.Lock()
        self._started = time.perf_counter()
        self._seen: set[str] = set()

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
            self.summary.seconds = time.perf_counter() - self._started
            self.ledger.finish_run(json.dumps(self.summary.counts))
        finally:
            self.ledger.__exit__()

    def start(self, contexts: Contexts, instances: list[Instance] | None = None) -> None:
        """Probe every destination (C-ECHO, or a QIDO-RS query) and start its workers; with
        `opts.verify` (and `instances`), reconcile the ledger with what the peer holds."""
        for dest in self.dests:
            worker = _Worker(dest, self.opts, self.ledger, contexts, self._record)
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

    def _reconcile(self, worker: _Worker, instances: list[Instance]) -> None:
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

    def _emit(self, res: InstanceResult) -> None:
        with self._mutex:
            self.summary.results.append(res)
        self.on_result(res)


def _unique(dests: list[Destination]) -> list[Destination]:
    seen: dict[str, Destination] = {}
    for d in dests:
        seen.setdefault(d.key, d)
    return list(seen.values())


def find_instances(output: Path, ledger: Ledger) -> tuple[list[Instance], list[str]]:
    """Every instance under `output` (headers read once, cached by size and mtime), and one-line
    reasons for the DICOM-looking files that could not be read. One instance per SOP Instance
    UID: a second file with the same UID (a copy) is left out."""
    found: list[Instance] = []
    bad: list[str] = []
    uids: set[str] = set()
    for path, rel in walk_files(output):
        try:
            st = path.stat()
        except OSError:
            continue
        hit = ledger.cached(rel, st.st_size, st.st_mtime_ns)
        if hit is not None:
            inst = Instance(path, rel, *hit, size=st.st_size, mtime_ns=st.st_mtime_ns)
        elif is_part10(path):
            try:
                inst = read_instance(path, rel)
            except NotDicom as exc:
                bad.append(exc.one_line())
                continue
            ledger.cache(inst)
        else:
            continue
        if inst.sop_uid not in uids:
            uids.add(inst.sop_uid)
            found.append(inst)
    return found, bad


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
    session = SendSession(output, destinations, opts, on_result, argv)
    with session:
        instances, bad = find_instances(output, session.ledger)
        session.summary.unreadable = bad
        if instances:
            session.start(Contexts.for_instances(instances), instances)
            for inst in instances:
                session.submit(inst)
    return session.summary


def convert_contexts() -> Contexts:
    """Presentation contexts for `convert --send`: everything the converter can write."""
    out = Contexts()
    for sop_class in WRITTEN_SOP_CLASSES:
        out.store[sop_class] = [list(WRITTEN_COMPRESSED), ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]]
    return out


class ConvertFeed:
    """`convert --send`: each converted instance is queued for sending as soon as it is durable
    (the runner's "written" event comes after the file's commit and its state row); when the
    conversion ends, whatever else in the tree is not yet stored (files converted by earlier
    runs) is queued too. Leaving the context waits for every outcome."""

    def __init__(
        self,
        output: Path,
        destinations: Iterable[str],
        opts: SendOptions,
        on_result: OnResult | None = None,
        argv: list[str] | None = None,
    ) -> None:
        self.output = output
        self.session = SendSession(output, destinations, opts, on_result, argv)

    @property
    def summary(self) -> SendSummary:
        return self.session.summary

    def __enter__(self) -> ConvertFeed:
        self.session.__enter__()
        try:
            self.session.start(convert_contexts())
        except BaseException:
            self.session.__exit__(None, None, None)
            raise
        return self

    def event(self, kind: str, done: int, total: int, result: Any) -> None:
        if kind == "written" and result is not None and result.status == "converted":
            for rel in result.outputs:
                self.session.submit_path(self.output / rel)

    def __exit__(self, *exc: object) -> None:
        try:
            if not exc or exc[0] is None:
                instances, bad = find_instances(self.output, self.session.ledger)
                self.session.summary.unreadable.extend(bad)
                for inst in instances:
                    self.session.submit(inst)
        finally:
            self.session.__exit__(*exc)
