"""Where the work of a run happens: the worker processes (or threads, for a remote service) and
what each worker holds (settings, the user's input, the classifiers, a person's decisions).

The main process builds the executor; each worker builds its `WorkerContext` once, and the stage
functions (`analyse.analyse`, `write.write_job`) read it with `context()`.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.synchronize import Lock, Semaphore
from typing import Any, TypeVar

from ..bounded import bounded_map
from ..config import ConvertSettings
from ..decisions import DecisionBook, taught_pack
from ..labels.model import LabelSource
from ..manifest import UserInput
from ..memory import heap_keep, keep_freed_heap
from . import capture
from .crashes import Workers, crashed_result, limit_memory
from .procs import die_with_parent
from .tasks import load_stages

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class WorkerContext:
    settings: ConvertSettings
    user: UserInput
    sources: list[LabelSource]
    decisions: DecisionBook | None = None  # a person's labels from the review page


_CTX: WorkerContext | None = None
# Set (to anything) to run --jobs 1 work in the main process, for a debugger.
IN_PROCESS_ENV = "ORTHOVISION_IN_PROCESS"


def context() -> WorkerContext:
    assert _CTX is not None, "a stage function ran outside a worker"
    return _CTX


def set_context(ctx: WorkerContext) -> None:
    """The context of the run this worker serves now (a cluster worker may serve several)."""
    global _CTX
    _CTX = ctx


def label_sources(settings: ConvertSettings) -> list[LabelSource]:
    """The classifiers, in priority order: the remote service (if any), then the local pack."""
    sources: list[LabelSource] = []
    if settings.remote:  # one service, or several fused per tag (remote.multi)
        # httpx loads only for a remote run.
        from ..remote.multi import build_remote_sources

        sources.append(
            build_remote_sources(settings.remote, settings.remote_options, settings.min_confidence)
        )
    if settings.use_models:
        # onnxruntime and the pack load only when models are used (not for --no-models runs).
        from ..labels.local import load_pack

        # No --models: the pack the review page taught from this output's decisions, if any
        # (review/rescore.py); it labels the files still undecided, as the taught model.
        models = settings.models if settings.models is not None else taught_pack(settings.output)
        sources.append(load_pack(models))
    return sources


def init_worker(settings: ConvertSettings, user: UserInput) -> None:
    global _CTX
    from PIL import Image  # a re-run with nothing new never starts a worker, nor loads Pillow

    # --max-pixels is the one decompression-bomb guard; Pillow's own (lower) limit would
    # refuse genuine large scans the user allowed. tifffile's warnings about odd tags are
    # noise on a batch's terminal: real problems surface as per-file errors.
    Image.MAX_IMAGE_PIXELS = settings.max_pixels
    logging.getLogger("tifffile").setLevel(logging.ERROR)
    decisions = DecisionBook(settings.output) if settings.output is not None else None
    _CTX = WorkerContext(settings, user, label_sources(settings), decisions)


def _init_pool_worker(parent: int, settings: ConvertSettings, user: UserInput, gate: Gate | None) -> None:
    die_with_parent(parent)  # no orphan writing files after a kill -9 of the main process
    # A turn's ~150 MB of coefficients reused, not page-faulted anew for every file.
    keep_freed_heap(heap_keep(settings.memory_budget, settings.worker_count))
    # One ONNX thread per worker process: N workers x N threads would fight over the cores.
    os.environ.setdefault("ORTHOVISION_THREADS", "1")
    init_worker(settings, user)
    # The stages (numpy, Pillow, pydicom): shared already where the pool forked after the main
    # process loaded them; loaded here, before the first task, where it forked before
    # (`early_executor`).
    if gate is None:
        load_stages()
    else:
        # A Ctrl-C meanwhile is the main process's: it stops these workers (`EarlyWorkers.drop`),
        # with no traceback of theirs on the terminal.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            gate.wait_and_load()
        except Exception:
            # A broken install (a codec that fails to load) must not break the pool: every file
            # would then be `worker-crashed`, and skipped by later runs. The first task loads the
            # stage again and its error reaches the main process, as where that loads them.
            pass
        finally:
            signal.signal(signal.SIGINT, previous)
    capture.enable()  # what libraries print goes to each file's report entry, not the terminal
    # One image cannot take the machine: past the budget, allocations fail (image-too-large).
    limit_memory(settings.memory_budget)


def make_executor(
    settings: ConvertSettings,
    user: UserInput,
    n_items: int,
    io_bound: bool = False,
    gate: Gate | None = None,
) -> Executor | Workers | None:
    """Threads for a remote service, or worker processes for local work (one at least); None
    (this process) only with ORTHOVISION_IN_PROCESS set. This process's context is set up where
    it does the work."""
    if io_bound:
        # Remote classification waits on the network: many images in flight from threads of
        # this process (one HTTP connection pool), not one per worker process.
        init_worker(settings, user)
        concurrency = settings.remote_options.concurrency
        return ThreadPoolExecutor(max(1, min(concurrency, n_items)), thread_name_prefix="analyse")
    workers = min(settings.worker_count, max(n_items, 1))
    if os.environ.get(IN_PROCESS_ENV):
        # For a debugger only: no crash containment, no per-worker memory limit.
        init_worker(settings, user)
        return None
    if settings.use_models:
        # Fail fast on a broken pack, before any work; only when there is work (a run with
        # nothing new never loads onnxruntime). Loaded before the fork, the workers share it.
        label_sources(settings)
    ctx = _mp_context()

    def pool(n: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            n, mp_context=ctx, initializer=_init_pool_worker, initargs=(os.getpid(), settings, user, gate)
        )

    # Even one worker is a process of its own: a native crash (libjpeg, a codec) then fails its
    # file (`worker-crashed`, skipped by later runs) instead of ending the run, and the file
    # does not end every later run too; --max-memory caps that process.
    return Workers(pool, workers)


# A worker waits at most this long for another to finish loading the stages (about 0.3 s) before
# it loads them beside it: one that died loading would hold the turn for ever.
ONE_AT_A_TIME_S = 10.0


@dataclass
class Gate:
    """Workers started early wait at `opened` before loading the stages, and load them one at a
    time (`one`): started before the walk, they would otherwise take turns on the cores with it
    and with the output check, and slow the run they are meant to speed up.

    `opened` is a semaphore that the main process releases (`open`) and that each worker passes
    on as it goes through, not an Event: setting an Event waits for every waiter to wake, and a
    worker that died waiting (killed, out of memory) would hang the run there."""

    opened: Semaphore
    one: Lock

    def open(self, tokens: int = 1) -> None:
        for _ in range(max(1, tokens)):
            self.opened.release()

    def wait_and_load(self) -> None:
        """In a worker: wait for the gate, pass it on, load the stages in turn."""
        self.opened.acquire()
        self.opened.release()  # the next worker's way through
        alone = self.one.acquire(timeout=ONE_AT_A_TIME_S)
        try:
            load_stages()
        finally:
            if alone:
                self.one.release()


@dataclass
class EarlyWorkers:
    """The pool of a nightly run over a large state, started before the walk (`early_executor`)."""

    workers: Workers
    gate: Gate
    opened: bool = False

    def begin(self) -> None:
        """There is work: the workers load the stages now (during the triage). Once is enough."""
        if not self.opened:
            self.opened = True
            # A token a worker: one that dies between taking and passing it on stops no other.
            self.gate.open(self.workers.count)

    def drop(self) -> None:
        """The run is over (its work done, or none found): workers still waiting or loading are
        stopped; they hold no file."""
        self.workers.discard()


def _mp_context() -> Any:
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def early_executor(settings: ConvertSettings, user: UserInput) -> EarlyWorkers | None:
    """The worker processes forked now, before the walk, while this process is small, for a run
    over a large state (a nightly run of a large archive). They load the stages (numpy, Pillow,
    pydicom: ~0.3 s each) once the run knows there is work (`EarlyWorkers.begin`: inputs the state
    never saw, found as the triage starts, or any the triage leaves), so that this process never
    loads them (issue 25: it is the critical path of a run that adds 1 %). None where the pool
    starts later: with models (loaded once here and shared by the fork), a remote service or a
    cluster, or work in this process."""
    if settings.use_models or settings.remote or settings.cluster or os.environ.get(IN_PROCESS_ENV):
        return None
    ctx = _mp_context()
    gate = Gate(ctx.Semaphore(0), ctx.Lock())
    pool = make_executor(settings, user, settings.worker_count, gate=gate)
    assert isinstance(pool, Workers)
    pool.start()
    return EarlyWorkers(pool, gate)


def pmap(
    pool: Executor | Workers | None,
    fn: Callable[[T], R],
    items: Iterable[T],
    weight: Callable[[T], int] | None = None,
    budget: int = 0,
) -> Iterator[R]:
    """Results in completion order; a bounded number of tasks in flight, and with `weight` the
    estimated memory of those in flight within `budget` (--max-memory)."""
    if pool is None:
        for it in items:
            yield fn(it)
        return
    limit = max(4, 2 * getattr(pool, "_max_workers", 2))
    if isinstance(pool, Workers):
        yield from pool.map(fn, items, limit, lambda it, why: crashed_result(fn, it, why), weight, budget)
        return
    for _, fut in bounded_map(pool, fn, items, limit, weight, budget):
        yield fut.result()
