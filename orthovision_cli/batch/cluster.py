"""The batch's heavy part on a Dask cluster (`convert --cluster`), behind the Executor interface.

The coordinator (the `convert` process) keeps what it always kept: walking, the state, the lock,
planning, the commit of names and the report. Dask workers run the same `analyse` and
`write_job` the local pool runs, on inputs and outputs every worker reaches under the same path
(a shared filesystem); a written file comes back as a temporary name that the coordinator makes
durable and renames, as with the local pool. Dask does the scheduling, the retries and the loss
of workers: a task whose worker dies is run again elsewhere, and `KilledWorker` (a task that
killed its workers `allowed-failures` times) fails that one input alone.

What a worker must not do is finish a file for a run that has gone (its coordinator killed, or
already finished): each written task checks the run's lease, a file in the state folder the
coordinator rewrites at its start and end, and deletes its temporary files if the lease is not
its own. The coordinator writes the lease *before* it sweeps temporary files, and a task writes
its files *before* it reads the lease, so every stray file is either seen by a sweep or
removed by its own task.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from .. import __version__
from ..config import LOCAL_CLUSTER, ConvertSettings, check_cluster
from ..decisions import DecisionBook
from ..defaults import TMP_PREFIX
from ..errors import OrthovisionError, OutputError, UsageError
from ..manifest import UserInput
from . import pool, write
from .results import Analysed, FileResult
from .state import STATE_DIR

try:  # the `cluster` extra; without it, --cluster is a usage error (DaskExecutor says so)
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - exercised only where Dask is missing
    WorkerPlugin = object  # type: ignore[misc,assignment]

LEASE = "cluster-lease"
CONNECT_TIMEOUT_S = float(os.environ.get("ORTHOVISION_CLUSTER_TIMEOUT", "30"))
BATCH = max(1, int(os.environ.get("ORTHOVISION_CLUSTER_BATCH", "8")))  # inputs a Dask task
FLUSH_S = 0.005  # a partial batch goes after this long
WORKERS_TIMEOUT_S = float(os.environ.get("ORTHOVISION_CLUSTER_WAIT", "120"))


class ClusterError(OutputError):
    """The cluster cannot be reached, cannot do this run, or was lost: the run stops (exit 5)
    with what was finished recorded, as when the output cannot be written."""

    reason = "cluster"


# ------------------------------------------------------------------ worker side

# Each run's context (settings, labelling sources with their loaded models), by run token. A
# worker may serve several runs one after another, or two at once (two coordinators sharing a
# cluster): the runner's analysis reads one module-wide context, so tasks of different runs
# take turns in a worker process; tasks of one run share it freely across the worker's threads.
_CONTEXTS: dict[str, Any] = {}
_TURN = threading.Condition()
_LOADING = threading.Lock()
_ACTIVE: str | None = None
_RUNNING = 0
LOADS = 0  # contexts built in this process (a test reads it: once per worker, not per task)


class _RunPlugin(WorkerPlugin):
    """Installed on every worker (and on any that joins later, or restarts after a crash):
    loads the run's models once, ready for all its tasks."""

    idempotent = False

    def __init__(self, token: str, settings: ConvertSettings, user: UserInput) -> None:
        self.token, self.settings, self.user = token, settings, user

    def setup(self, worker: Any) -> None:
        self.load()

    def load(self) -> None:
        with _LOADING:  # the plugin's setup and a task that came first: one load
            if self.token not in _CONTEXTS:
                self._load()

    def _load(self) -> None:
        global LOADS
        # As the local pool: one ONNX thread per task, so that worker threads do not fight
        # (and labels are computed exactly as on one machine).
        os.environ.setdefault("ORTHOVISION_THREADS", "1")
        Image.MAX_IMAGE_PIXELS = self.settings.max_pixels
        logging.getLogger("tifffile").setLevel(logging.ERROR)
        out = self.settings.output
        decisions = DecisionBook(out) if out is not None else None
        # With --remote the coordinator classifies (its threads call the service, its token
        # stays there) and the workers only write: they need no classifier at all.
        sources = [] if self.settings.remote else pool.label_sources(self.settings)
        ctx = pool.WorkerContext(self.settings, self.user, sources, decisions)
        with _TURN:
            _CONTEXTS[self.token] = ctx
            LOADS += 1

    def teardown(self, worker: Any) -> None:
        with _TURN:
            _CONTEXTS.pop(self.token, None)


def plugin_name(token: str) -> str:
    return f"orthovision-{token}"


def _context_for(token: str) -> Any:
    """The run's context; a task can reach a worker that has just (re)started before its
    plugins are set up, and then loads it itself, once."""
    ctx = _CONTEXTS.get(token)
    if ctx is not None:
        return ctx
    from distributed import get_worker

    deadline = time.monotonic() + 60
    while True:
        plugin = get_worker().plugins.get(plugin_name(token))
        if isinstance(plugin, _RunPlugin):
            plugin.load()
            return _CONTEXTS[token]
        if time.monotonic() > deadline:
            raise ClusterError("this worker never received the run's settings (plugin missing)")
        time.sleep(0.05)


@contextlib.contextmanager
def _turn(token: str) -> Iterator[None]:
    global _ACTIVE, _RUNNING
    ctx = _context_for(token)
    with _TURN:
        while _RUNNING and token != _ACTIVE:
            _TURN.wait()
        pool.set_context(ctx)
        Image.MAX_IMAGE_PIXELS = ctx.settings.max_pixels
        _ACTIVE = token
        _RUNNING += 1
    try:
        yield
    finally:
        with _TURN:
            _RUNNING -= 1
            _TURN.notify_all()


def lease_holds(lease: str, token: str) -> bool:
    try:
        return Path(lease).read_text().strip() == token
    except OSError:
        return False


def _task(token: str, lease: str, fsync: bool, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """A few inputs' analysis or writing, on a worker, one after the other."""
    with _turn(token):
        results = [fn(item) for item in items]
    pending = [p for res in results for p in (getattr(res, "pending", None) or [])]
    if pending:
        if fsync:
            # The coordinator's syncfs reaches its own page cache only: on a shared filesystem
            # the data must be durable from the machine that wrote it.
            for tmp, _ in pending:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        if not lease_holds(lease, token):  # the run has gone: nobody will commit these
            for tmp, _ in pending:
                Path(tmp).unlink(missing_ok=True)
            raise ClusterError("the run that submitted this task has ended")
    return results


def _identity(models: str | None, output: str) -> dict[str, Any]:
    """What must match between coordinator and workers for identical outputs."""
    import pydicom

    from ..labels.local.packs import default_pack_path

    pack = Path(models) if models else default_pack_path()
    try:
        pack_hash = hashlib.sha256((pack / "manifest.json").read_bytes()).hexdigest()[:16]
    except OSError:
        pack_hash = "unreadable"
    return {
        "orthovision": __version__,
        "pydicom": pydicom.__version__,
        "pack": pack_hash,
        "output": os.access(output, os.W_OK),
    }


# ------------------------------------------------------------------ coordinator side


def _lost(item: Any, exc: BaseException) -> Any:
    """The result of an input whose task kept killing its workers: that input fails alone."""
    msg = f"the worker processing it died repeatedly (out of memory?): {exc}"
    msg = " ".join(msg.split())
    if isinstance(item, write.WriteJob):
        pi = item.plan.input
        return FileResult(
            str(pi.probe.path),
            pi.rel,
            "failed",
            "worker-lost",
            msg,
            content_hash=pi.content_hash,
            labels=pi.labels.as_dict(),
        )
    path = str(item.path)
    return Analysed(path, item.rel, 0, 0, error=FileResult(path, item.rel, "failed", "worker-lost", msg))


class DaskExecutor(cf.Executor):
    """A `concurrent.futures.Executor` whose tasks run on a Dask cluster.

    `--cluster local:N` starts a LocalCluster of N single-threaded worker processes (they die
    with this process); an address connects to a running scheduler. `_max_workers` follows the
    cluster's thread count: the batch keeps a bounded number of tasks in flight (back-pressure).
    """

    def __init__(self, settings: ConvertSettings, user: UserInput) -> None:
        try:
            import distributed
        except ImportError:
            raise UsageError("--cluster needs Dask: pip install 'orthovision-cli[cluster]'") from None
        spec = settings.cluster or ""
        # Dask logs a lost scheduler as a multi-line error; the run says it in one line.
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
        check_cluster(spec)
        assert settings.output is not None
        self._output = settings.output
        self._settings = settings
        self._cluster: Any = None
        self._folders: set[Path] = set()
        self._futures: set[Any] = set()
        self._buffers: dict[Any, list[tuple[Any, cf.Future[Any]]]] = {}
        self._closed = False
        self._lock = threading.Lock()
        m = LOCAL_CLUSTER.fullmatch(spec)
        try:
            if m:
                self._cluster = distributed.LocalCluster(
                    n_workers=int(m.group(1)),
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    host="127.0.0.1",
                    silence_logs=50,
                )
                self.client = distributed.Client(self._cluster, set_as_default=False)
            else:
                self.client = distributed.Client(spec, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            self._close_cluster()
            raise ClusterError(f"cannot reach the Dask scheduler at {spec}: {exc}") from None
        try:
            self._start(settings, user)
        except BaseException:
            self._close_cluster()
            raise

    def _start(self, settings: ConvertSettings, user: UserInput) -> None:
        try:
            self.client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
        except TimeoutError:
            raise ClusterError(
                f"no Dask worker joined {settings.cluster} within {WORKERS_TIMEOUT_S:.0f} s"
            ) from None
        models = str(settings.models) if settings.models else None
        mine = _identity(models, str(self._output))
        theirs = self.client.run(_identity, models, str(self._output))
        for addr, ident in theirs.items():
            if not ident["output"]:
                raise ClusterError(
                    f"worker {addr} cannot write the output folder {self._output}: "
                    "inputs and output must be on storage every worker reaches "
                    "under the same path"
                )
            diff = [k for k in ("orthovision", "pydicom", "pack") if ident[k] != mine[k]]
            if diff:
                raise ClusterError(
                    f"worker {addr} differs from this coordinator in "
                    + ", ".join(f"{k} ({ident[k]} vs {mine[k]})" for k in diff)
                    + ": install the same orthovision-cli and model pack everywhere"
                )
        self.token = secrets.token_hex(12)
        self._lease = self._output / STATE_DIR / LEASE
        _write_atomic(self._lease, self.token)
        self.client.register_plugin(_RunPlugin(self.token, settings, user), name=plugin_name(self.token))
        info = self.client.scheduler_info(n_workers=-1)
        threads = max(1, sum(w.get("nthreads", 1) for w in info["workers"].values()))
        # The batch keeps 2 x _max_workers inputs in flight: here 4 Dask tasks of BATCH inputs
        # per worker thread, so that work waits on each worker while results travel back.
        self._max_workers = 2 * threads * BATCH

    # concurrent.futures.Executor

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        """Inputs go to Dask in small batches (BATCH a task, or what came within FLUSH_S): a
        Dask task costs the coordinator and the scheduler a few milliseconds, an input less."""
        if self._closed:
            raise RuntimeError("cannot submit to a closed cluster executor")
        (item,) = args
        if isinstance(item, write.WriteJob):  # where its temporary files may appear
            self._folders.update((self._output / d).parent for d in item.dests)
        out: cf.Future[Any] = cf.Future()
        with self._lock:
            buf = self._buffers.setdefault(fn, [])
            buf.append((item, out))
            if len(buf) >= BATCH:
                self._send(fn, self._buffers.pop(fn))
            elif len(buf) == 1:
                timer = threading.Timer(FLUSH_S, self._flush, (fn,))
                timer.daemon = True
                timer.start()
        return out

    def _flush(self, fn: Callable[..., Any]) -> None:
        with self._lock:
            buf = self._buffers.pop(fn, None)
            if buf and not self._closed:
                self._send(fn, buf)
            elif buf:
                for _, out in buf:
                    out.set_exception(ClusterError("the run stopped"))

    def _send(self, fn: Callable[..., Any], batch: list[tuple[Any, cf.Future[Any]]]) -> None:
        items = [item for item, _ in batch]
        dfut = self.client.submit(
            _task, self.token, str(self._lease), self._settings.fsync, fn, items, pure=False
        )
        self._futures.add(dfut)

        def fail(exc: BaseException) -> None:
            for _, out in batch:
                if not out.done():
                    out.set_exception(exc)

        def done(f: Any) -> None:
            from distributed import KilledWorker

            with self._lock:
                self._futures.discard(f)
            try:
                # Not the status: a result held by a worker that died since is "lost" and
                # computed again; result() waits for that.
                results = f.result()
            except KilledWorker as exc:
                if len(batch) > 1:  # find the culprit: each input again on its own
                    with self._lock:
                        if self._closed:
                            fail(ClusterError("the run stopped"))
                        else:
                            for entry in batch:
                                self._send(fn, [entry])
                else:
                    batch[0][1].set_result(_lost(batch[0][0], exc))
            except OrthovisionError as exc:  # e.g. the output disk is full
                fail(exc)
            except BaseException as exc:  # cancelled, or the scheduler lost: the cluster failed
                if f.cancelled():
                    fail(ClusterError("lost the Dask scheduler (or it dropped a task)"))
                else:
                    fail(ClusterError(f"the Dask cluster failed: {type(exc).__name__}: {exc}"))
            else:
                for (_, out), res in zip(batch, results, strict=True):
                    out.set_result(res)
            finally:
                f.release()

        dfut.add_done_callback(done)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            left = list(self._futures)
            for buf in self._buffers.values():
                for _, out in buf:
                    out.cancel()
            self._buffers.clear()
        if left:
            with contextlib.suppress(Exception):
                self.client.cancel(left)
        # End the lease first, then sweep: a task still running somewhere either finds the
        # lease gone and deletes its own files, or wrote them before this sweep sees them.
        with contextlib.suppress(OSError):
            _write_atomic(self._lease, "")
        for folder in self._folders:
            _sweep(folder)
        with contextlib.suppress(Exception):
            self.client.unregister_worker_plugin(plugin_name(self.token))
        self._close_cluster()

    def _close_cluster(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=10)
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close(timeout=10)
            self._cluster = None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _sweep(folder: Path) -> None:
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(TMP_PREFIX):
            with contextlib.suppress(OSError):
                os.unlink(folder / name)
