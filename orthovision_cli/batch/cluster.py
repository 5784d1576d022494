"""The batch's heavy part on a Dask cluster (`convert --cluster`), behind the Executor interface.

The coordinator (the `convert` process) keeps what it always kept: walking, the state, the lock,
planning, the commit of names and the report. Dask workers run the same `analyse` and
`write_job` the local pool runs, on inputs and outputs every worker reaches under the same path
(a shared filesystem); a written file comes back as a temporary name that the coordinator makes
durable and renames, as with the local pool. Dask does the scheduling, the retries and the loss
of workers: a task whose worker dies is run again elsewhere, and `KilledWorker` (a task that
killed its workers `allowed-failures` times) fails that one input alone.

The worker side is cluster_worker.py; the lease that stops a worker from finishing a file for a
run that has gone is cluster_lease.py.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import os
import re
import secrets
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import LOCAL_CLUSTER, ConvertSettings, check_cluster
from ..errors import ClusterError, OrthovisionError, UsageError
from ..manifest import UserInput
from .cluster_lease import LEASE, sweep_temporaries, write_lease
from .cluster_worker import RunPlugin, identity, plugin_name, run_task
from .record import WriteJob
from .results import Analysed, FileResult
from .state import STATE_DIR

CONNECT_TIMEOUT_S = float(os.environ.get("ORTHOVISION_CLUSTER_TIMEOUT", "30"))
BATCH = max(1, int(os.environ.get("ORTHOVISION_CLUSTER_BATCH", "8")))  # inputs a Dask task
FLUSH_S = 0.005  # a partial batch goes after this long
WORKERS_TIMEOUT_S = float(os.environ.get("ORTHOVISION_CLUSTER_WAIT", "120"))


_TLS_ENV = "DASK_DISTRIBUTED__COMM__TLS__"
_SSL_ALERT = re.compile(r"\[SSL: (\w*ALERT\w*)\]")


def _check_security(spec: str) -> None:
    """Dask's TLS configuration against the address, before a Client exists: a Client that fails
    on its configuration prints a traceback from its own cleanup, 10 s later. A `tls://` address
    needs the coordinator's certificates; a `tcp://` one (or `local:N`) is refused when
    encryption is required."""
    from distributed.security import Security

    try:
        security = Security()
        tls = security.get_tls_config_for_role("client")
    except (OSError, ValueError, TypeError) as exc:  # e.g. an unknown TLS version in the config
        raise UsageError(f"--cluster: Dask's TLS configuration is invalid: {exc}") from None
    if not spec.startswith("tls://"):
        if security.require_encryption:
            raise UsageError(
                f"--cluster {spec}: Dask's configuration requires encryption "
                "(distributed.comm.require-encryption): "
                + (
                    "a local cluster is not encrypted"
                    if LOCAL_CLUSTER.fullmatch(spec)
                    else "give the scheduler's tls:// address"
                )
            )
        return
    where = {"ca_file": "CA_FILE", "cert": "CLIENT__CERT", "key": "CLIENT__KEY"}
    if not tls.get("ca_file") or not tls.get("cert"):
        raise UsageError(
            f"--cluster {spec} needs this coordinator's TLS certificates in Dask's configuration: "
            f"set {_TLS_ENV}CA_FILE, {_TLS_ENV}CLIENT__CERT and {_TLS_ENV}CLIENT__KEY "
            "(docs/cluster.md#security)"
        )
    for key, name in where.items():
        value = tls.get(key)
        if value and "\n" not in value and not Path(value).is_file():  # "\n": a PEM given inline
            raise UsageError(f"--cluster: {_TLS_ENV}{name}: no such file: {value}")
    try:
        security.get_connection_args("client")  # loads the CA, the certificate and its key
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise UsageError(
            f"--cluster: cannot load the TLS certificates in Dask's configuration: {exc}"
        ) from None


def _unreachable(spec: str, exc: BaseException) -> ClusterError:
    """One line for a scheduler this coordinator could not talk to, naming a TLS refusal."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    verify = next((c for c in chain if isinstance(c, ssl.SSLCertVerificationError)), None)
    # A scheduler that refuses our certificate sends an alert (which Dask re-raises as text,
    # unchained) or, as the race goes, just closes the connection in the handshake.
    alert = next((m.group(1) for c in chain if (m := _SSL_ALERT.search(str(c)))), None)
    closed = next((c for c in chain if isinstance(c, ssl.SSLError | ConnectionResetError)), None)
    if verify is not None:
        why = (
            f"TLS: the scheduler's certificate is not signed by the CA this coordinator trusts "
            f"({_TLS_ENV}CA_FILE): {verify.verify_message}"
        )
    elif spec.startswith("tls://") and (alert or closed):
        why = (
            "TLS: the scheduler refused this coordinator's certificate (is it signed by the "
            f"scheduler's CA?): {alert or type(closed).__name__}"
        )
    elif spec.startswith("tcp://") and any(isinstance(c, ConnectionResetError) for c in chain):
        why = "it closed the connection at once (a tls:// scheduler? see docs/cluster.md#security)"
    else:
        why = str(exc)
    return ClusterError(f"cannot reach the Dask scheduler at {spec}: {' '.join(why.split())}")


def _lost(item: Any, exc: BaseException) -> Any:
    """The result of an input whose task kept killing its workers: that input fails alone."""
    msg = f"the worker processing it died repeatedly (out of memory?): {exc}"
    msg = " ".join(msg.split())
    if isinstance(item, WriteJob):
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
    path = item.path_str
    return Analysed(path, item.rel, 0, 0, error=FileResult(path, item.rel, "failed", "worker-lost", msg))


def _quiet_dask_logs() -> None:
    """Dask logs a lost scheduler as a multi-line error, and its event loop (asyncio, tornado)
    may log the same loss with a traceback; the run says it in one line. Dask's own config sets
    levels on child loggers (`distributed.client: warning`), which a parent's level does not
    override: every logger under these names is quietened, and their handlers too."""
    prefixes = ("distributed", "asyncio", "tornado")
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".", 1)[0] in prefixes]
    for name in {*prefixes, *names}:
        logger = logging.getLogger(name)
        logger.setLevel(logging.CRITICAL)
        for handler in logger.handlers:
            handler.setLevel(logging.CRITICAL)


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
        _quiet_dask_logs()
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
        _check_security(spec)
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
            raise _unreachable(spec, exc) from None
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
        mine = identity(models, str(self._output))
        theirs = self.client.run(identity, models, str(self._output))
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
        write_lease(self._lease, self.token)
        self.client.register_plugin(RunPlugin(self.token, settings, user), name=plugin_name(self.token))
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
        if isinstance(item, WriteJob):  # where its temporary files may appear
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
            run_task, self.token, str(self._lease), self._settings.fsync, fn, items, pure=False
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
            write_lease(self._lease, "")
        for folder in self._folders:
            sweep_temporaries(folder)
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
