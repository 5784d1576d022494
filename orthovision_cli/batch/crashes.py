"""Worker processes whose death costs one file, not the batch.

A segfault in a native library (libjpeg, an image codec) or the kernel's OOM killer ends a pool
worker; `concurrent.futures` then fails every task in flight with `BrokenProcessPool` and the
pool is unusable. `Workers` replaces the pool, re-runs each task that was in flight alone in a
fresh one-worker pool (so one bad file cannot take innocent neighbours down with it), and gives
the task that kills its worker again to `crashed`, which turns it into that file's failure
(`worker-crashed`). Each worker also gets an address-space limit (RLIMIT_AS), so that one image
cannot take the machine's memory: past it, allocations fail (MemoryError, `image-too-large`).
"""

from __future__ import annotations

import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..labels.model import Labels
from .results import Analysed, Classified, FileResult
from .walk import FoundList

try:
    import resource
except ImportError:  # not POSIX: no address-space limit
    resource = None  # type: ignore[assignment]

REASON = "worker-crashed"
# The least address space a worker may grow by, whatever --max-memory says: inputs are memory
# mapped (hashing, JPEG headers), and a small budget must slow the scheduling, not fail files.
MIN_ALLOWANCE = 4 << 30


def limit_memory(budget: int) -> None:
    """Cap this process's address space at what it has mapped now plus the budget (at least
    MIN_ALLOWANCE); call in a worker after its imports and models are loaded."""
    if budget <= 0 or resource is None:
        return
    try:
        want = _mapped_bytes() + max(budget, MIN_ALLOWANCE)
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            want = min(want, hard)
        if soft == resource.RLIM_INFINITY or want < soft:
            resource.setrlimit(resource.RLIMIT_AS, (want, hard))
    except (OSError, ValueError):
        pass  # no limit where the platform refuses one


def _mapped_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def describe_exit(code: int | None) -> str:
    if code is None:
        return "the worker process died"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (killed: out of memory?)" if -code == signal.SIGKILL else ""
        return f"the worker process died of {name}{hint}"
    return f"the worker process exited with status {code}"


# A group of items sent as one task takes about this much of a worker's time at most, and holds
# at most CHUNK_ITEMS items; each worker has at least two tasks of what is left. Each task costs
# the coordinator a wake-up of the pool's thread, which contends with it for the GIL (measured
# at 0.6 ms a task on the +1 % run of issue 25): 20 ms groups left a third of its time there.
CHUNK_SECONDS = 0.1
CHUNK_ITEMS = 64


def chunk_size(per_item: float | None, left: int, workers: int) -> int:
    """How many items the next task takes: one until an item's time is measured, then as many
    as fit CHUNK_SECONDS, but never so many that a worker would wait at the end."""
    if per_item is None:
        return 1
    fit = int(CHUNK_SECONDS / per_item) if per_item > 0 else CHUNK_ITEMS
    return max(1, min(fit, CHUNK_ITEMS, left // (2 * max(1, workers))))


def run_chunk(fn: Callable[[Any], Any], items: list[Any]) -> tuple[list[Any], float]:
    """In a worker: `fn` of each item, and the seconds they took."""
    start = time.perf_counter()
    return [fn(item) for item in items], time.perf_counter() - start


class Workers:
    """A process pool that survives the death of its workers. `factory(n)` makes a pool of
    `n` workers."""

    def __init__(self, factory: Callable[[int], ProcessPoolExecutor], workers: int):
        self.factory = factory
        self._max_workers = workers
        self.pool = factory(workers)
        self.crashes = 0  # tasks that killed their worker even alone
        self.broken = 0  # times the pool broke

    @property
    def count(self) -> int:
        """Worker processes (`_max_workers`, the name `pmap` reads from any executor)."""
        return self._max_workers

    def start(self) -> None:
        """Start the worker processes now, not at the first task (a fork pool starts them all at
        its first submit: a task that does nothing)."""
        self.pool.submit(int)

    def submit_chunks(
        self, fn: Callable[[Any], Any], items: list[Any], size: int
    ) -> list[tuple[Future[Any], list[Any]]]:
        """`fn` of each item, `size` items a task (`run_chunk`), all submitted now: for few,
        small items (`ahead.Ahead`). Where the pool is broken, those not submitted are left out;
        a task whose worker dies fails (its items are for the caller to do again)."""
        tasks: list[tuple[Future[Any], list[Any]]] = []
        for at in range(0, len(items), size):
            chunk = items[at : at + size]
            try:
                tasks.append((self.pool.submit(run_chunk, fn, chunk), chunk))
            except BrokenProcessPool:
                break
        return tasks

    def discard(self) -> None:
        """Stop the workers now, whatever they do (`_discard`)."""
        _discard(self.pool)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    def map(
        self,
        fn: Callable[[Any], Any],
        items: Iterable[Any],
        limit: int,
        crashed: Callable[[Any, str], Any],
        weight: Callable[[Any], int] | None = None,
        budget: int = 0,
    ) -> Iterator[Any]:
        """`fn(item)` for each item, at most `limit` tasks (and `budget` of `weight`) in flight;
        results in completion order. An item whose task kills its worker yields
        `crashed(item, why)` instead, and the others go on.

        Items that take little time go to a worker in groups, one task each (`chunk_size`): a
        task's round trip through the pool costs about a quarter of a millisecond of this
        process's time, as much as converting a small file (issue 25: 1,000 new files of a
        nightly run). A group whose worker dies is done again one item at a time, each alone, so
        the item that killed it is found as before."""
        todo: deque[Any] = deque(items)
        pending: dict[Future[Any], tuple[list[Any], int]] = {}
        in_use = 0
        per_item: float | None = None  # seconds of a worker's time an item takes, as measured
        while todo or pending:
            broken = False
            while todo and len(pending) < max(1, limit):
                size = chunk_size(per_item, len(todo), self._max_workers)
                chunk: list[Any] = []
                w_chunk = 0
                while todo and len(chunk) < size:
                    w = weight(todo[0]) if weight is not None else 0
                    if budget and (pending or chunk) and in_use + w_chunk + w > budget:
                        break
                    chunk.append(todo.popleft())
                    w_chunk += w
                if not chunk:
                    break
                try:
                    fut = self.pool.submit(run_chunk, fn, chunk)
                except BrokenProcessPool:
                    todo.extendleft(reversed(chunk))
                    broken = True
                    break
                pending[fut] = (chunk, w_chunk)
                in_use += w_chunk
            suspects: list[Any] = []
            if pending and not broken:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    chunk, w_chunk = pending.pop(fut)
                    in_use -= w_chunk
                    if isinstance(fut.exception(), BrokenProcessPool):
                        suspects.extend(chunk)
                        broken = True
                    else:
                        results, seconds = fut.result()
                        measured = seconds / len(chunk)
                        per_item = measured if per_item is None else 0.7 * per_item + 0.3 * measured
                        yield from results
            if broken:
                # Every task in flight on a broken pool fails, the culprit among them.
                suspects.extend(item for chunk, _ in pending.values() for item in chunk)
                pending.clear()
                in_use = 0
                self.broken += 1
                _discard(self.pool)
                for item in suspects:
                    yield self._alone(fn, item, crashed)
                self.pool = self.factory(self._max_workers)

    def _alone(self, fn: Callable[[Any], Any], item: Any, crashed: Callable[[Any, str], Any]) -> Any:
        """Run one suspect in a pool of its own: its result, or its crash."""
        solo = self.factory(1)
        try:
            fut = solo.submit(fn, item)
            procs = list(getattr(solo, "_processes", {}).values())
            try:
                return fut.result()
            except BrokenProcessPool:
                self.crashes += 1
                code = None
                for p in procs:
                    p.join(timeout=5)
                    code = p.exitcode if p.exitcode is not None else code
                return crashed(item, describe_exit(code))
        finally:
            _discard(solo)


def _discard(pool: ProcessPoolExecutor) -> None:
    """Shut a (possibly broken) pool down without waiting on its survivors: a worker killed
    while it held the task queue's lock would leave the others blocked for ever, and a graceful
    shutdown would wait for them."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    for p in procs:
        if p.is_alive():
            p.kill()
    for p in procs:
        p.join(timeout=10)
    pool.shutdown(wait=False, cancel_futures=True)


def crashed_result(fn: Callable[..., Any], item: Any, why: str) -> Any:
    """The result of a task `fn(item)` whose worker died: that file's failure (an `Analysed`
    for the analyse stage, a `FileResult` for the write stage, a `Classified` for classify)."""
    message = f"{why} while reading this file; later runs skip it unless --force"
    if getattr(fn, "__name__", "") == "classify_input":
        return Classified(item.path_str, item.rel, Labels(), f"{REASON}: {why} while reading it")
    plan = getattr(item, "plan", None)
    if plan is not None:  # a WriteJob
        pi = plan.input
        return FileResult(
            str(pi.probe.path),
            pi.rel,
            "failed",
            REASON,
            message,
            content_hash=pi.content_hash,
            labels=pi.labels.as_dict(),
        )
    try:
        st = item.path.stat()
        size, mtime_ns = st.st_size, st.st_mtime_ns
    except OSError:
        size = mtime_ns = 0
    res = FileResult(item.path_str, item.rel, "failed", REASON, message)
    return Analysed(item.path_str, item.rel, size, mtime_ns, error=res)


def skip_crashed(todo: FoundList, records: dict[str, Any]) -> tuple[FoundList, list[FileResult]]:
    """Inputs that killed a worker in an earlier run (`records`: the state's `worker-crashed`
    rows, by path), unchanged since, are not tried again: no poison pill, one file must not stop
    every run of an archive. Returns (to do, their results)."""
    skipped: dict[str, FileResult] = {}
    for i, path in enumerate(todo.paths() if records else ()):
        rec = records.get(path)
        if rec is None:
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        if (st.st_size, st.st_mtime_ns) == (rec.size, rec.mtime_ns):
            why = rec.message.split(" while ")[0]
            skipped[path] = FileResult(
                path,
                todo.rel_of(i),
                "failed",
                REASON,
                f"skipped: it crashed a worker in an earlier run ({why}); --force tries again",
            )
    if not skipped:
        return todo, []
    return todo.where(lambda p: p not in skipped), list(skipped.values())
