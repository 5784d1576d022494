"""The worker side of `convert --cluster`: what runs in a Dask worker process.

A `RunPlugin` loads a run's context (its settings, the labelling sources with their models) once
per worker; `run_task` runs a few inputs' `analyse` or `write_job`, as the local pool does, and
checks the run's lease (cluster_lease.py) before its files are left for the coordinator to
commit; `identity` tells the coordinator what must match for identical outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from .. import __version__
from ..config import ConvertSettings
from ..decisions import DecisionBook
from ..errors import ClusterError
from ..manifest import UserInput
from . import pool
from .cluster_lease import lease_holds

try:  # the `cluster` extra; without it, --cluster is a usage error (DaskExecutor says so)
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # pragma: no cover - exercised only where Dask is missing
    WorkerPlugin = object  # type: ignore[misc,assignment]


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


class RunPlugin(WorkerPlugin):
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
        if isinstance(plugin, RunPlugin):
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


def run_task(token: str, lease: str, fsync: bool, fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
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


def identity(models: str | None, output: str) -> dict[str, Any]:
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
