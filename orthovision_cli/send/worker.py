"""One destination's queue and worker threads.

`associations` threads share the queue; a DIMSE worker keeps its association open across
instances (reopened with backoff when lost), a STOW-RS worker takes what is queued, up to one
batch, per request. The first DIMSE worker opens its association first; the others open theirs
only once it is up, and one the peer refuses (a PACS that takes fewer associations than asked)
ends that worker before it takes any instance: the others send everything, and `refused` says
why (issue 25: several associations by default). Once the destination turns out unusable
(unreachable after the retries, association rejected, credentials refused) `error` says why and
what is left is failed with it at once.
"""

from __future__ import annotations

import queue
import ssl
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import AssociationBusy, DestinationError, DestinationUnreachable
from .destinations import Destination
from .dimse import Contexts, DimseAssociation, DimsePeer
from .instances import Instance
from .ledger import FAILED, Ledger, Outcome
from .options import SendOptions
from .stow import StowPeer

T = TypeVar("T")


class DestinationWorker:
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
        self._first_up = threading.Event()  # the first worker's association opened, or it ended
        self._lock = threading.Lock()
        self.opened = 0  # DIMSE workers whose association the peer accepted
        self.refused: list[str] = []  # why the peer refused an extra association, one line each
        self.dimse: DimsePeer | None = None
        self.stow: StowPeer | None = None
        if dest.kind == "dimse":
            self.dimse = DimsePeer(dest, calling_ae=opts.calling_ae, timeout=opts.timeout, tls=opts.tls)
        else:
            verify: bool | ssl.SSLContext = opts.tls if opts.tls is not None else not opts.insecure
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
            self._retrying(self.dimse.echo)
        elif self.stow is not None:
            self.stow.probe()

    def held(self, instances: list[Instance]) -> set[str]:
        if self.dimse is not None:
            dimse = self.dimse
            return self._retrying(lambda: dimse.held(instances))
        assert self.stow is not None
        return self.stow.held(instances)

    def _retrying(self, call: Callable[[], T]) -> T:
        """`call`, tried again with backoff, as a store is, while the peer rejects the
        association as transient (a peer that counts a just-released association a moment
        longer says "busy") or cannot be reached (a connection dropped before its answer)."""
        delays = self.opts.backoff.delays()
        for attempt in range(self.opts.retries + 1):
            try:
                return call()
            except (AssociationBusy, DestinationUnreachable):
                if attempt == self.opts.retries:
                    raise
                time.sleep(next(delays))
        raise AssertionError("unreachable")

    def start(self) -> None:
        for n in range(self.opts.associations):
            if self.dimse is None:
                target = self._run_stow
            else:
                target = self._run_dimse if n == 0 else self._run_dimse_extra
            t = threading.Thread(target=self._guard, args=(target,), name=f"send-{n}", daemon=True)
            t.start()
            self._threads.append(t)

    def refused_line(self) -> str | None:
        """One line when the peer took fewer DIMSE associations than asked, else None."""
        if not self.refused or not self.opened:
            return None
        return (
            f"the peer accepted {self.opened} of {self.opts.associations} associations "
            f"({self.refused[0]}); sent over {self.opened} (--associations {self.opened} asks no more)"
        )

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

    def _run_dimse_extra(self) -> None:
        """An extra association: opened once the first is up; if the peer refuses it, this
        worker ends without taking an instance (the others send them)."""
        assert self.dimse is not None
        self._first_up.wait()
        if self.error is not None or not self.opened:
            return  # the first worker fails or sends what is queued
        try:
            assoc = self.dimse.open(self.contexts)
        except DestinationError as exc:
            with self._lock:
                self.refused.append(exc.message)
            return
        with self._lock:
            self.opened += 1
        self._run_dimse(assoc)

    def _run_dimse(self, assoc: DimseAssociation | None = None) -> None:
        assert self.dimse is not None
        first = assoc is None
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
            if first:
                self._first_up.set()  # nothing (more) to wait for
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
                except (DestinationUnreachable, AssociationBusy) as exc:  # worth a retry
                    assoc = None
                    if attempt == self.opts.retries:
                        self.error = self.error or exc
                        return None, None
                    time.sleep(next(delays))
                    continue
                except DestinationError as exc:
                    self.error = self.error or exc
                    return None, None
                if not self._first_up.is_set():  # the first association: the others may open
                    with self._lock:
                        self.opened += 1
                    self._first_up.set()
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
