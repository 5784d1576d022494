"""A bounded pool of classifier threads: at most `workers` run, at most `queue_size` wait.

Admission is decided before any work is queued so a burst is answered with 429 instead of
growing memory. Each image is written to a private temporary file for the classifier (model
packs read from a path) and removed as soon as it has been classified.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import OrthovisionError
from ..fhir import ig
from ..fhir.labels import label_value
from ..inputs.source import SourceImage
from ..labels.model import Labels, normalise_tag
from .store import Store

log = logging.getLogger(__name__)

SUFFIX = {"image/jpeg": ".jpg", "image/png": ".png", "image/tiff": ".tif", "image/jp2": ".jp2"}


class WorkerPool:
    def __init__(self, classifier: Any, store: Store, *, workers: int, queue_size: int) -> None:
        self.classifier = classifier
        self.store = store
        self.workers = max(1, workers)
        self.capacity = self.workers + max(0, queue_size)
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="classify")
        self._lock = threading.Lock()
        self._admitted = 0
        self._tmp = tempfile.TemporaryDirectory(prefix="orthovision-serve-")
        os.chmod(self._tmp.name, 0o700)
        self.busy_seconds = 0.0
        self.completed = 0
        self.failed = 0
        self.rejected = 0
        self.started = time.monotonic()

    def try_admit(self) -> bool:
        with self._lock:
            if self._admitted >= self.capacity:
                self.rejected += 1
                return False
            self._admitted += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._admitted -= 1

    @property
    def depth(self) -> int:
        with self._lock:
            return self._admitted

    def submit(self, task_id: str) -> None:
        """Queue an admitted Task (call `try_admit` first)."""
        self._pool.submit(self._run, task_id)

    def _run(self, task_id: str) -> None:
        t0 = time.perf_counter()
        try:
            self._classify(task_id)
        except Exception as exc:  # a classifier bug must end the Task, not the worker
            log.exception("task %s: classifier crashed", task_id)
            self.store.finish(task_id, "failed", reason=f"processing-error: {type(exc).__name__}")
        finally:
            with self._lock:
                self.busy_seconds += time.perf_counter() - t0
            self.release()

    def _classify(self, task_id: str) -> None:
        rec = self.store.task(task_id)
        data = self.store.image(task_id)
        if rec is None or data is None:
            return
        self.store.update(task_id, "classifying")
        path = Path(self._tmp.name) / f"{task_id}{SUFFIX.get(rec.content_type, '.img')}"
        try:
            path.write_bytes(data)
            image = SourceImage(path=path, rel=path.name, format=path.suffix[1:])
            try:
                labels: Labels = self.classifier.classify(image)
            except OrthovisionError as exc:
                code = "corrupted-data" if "corrupt" in exc.reason else exc.reason
                self.store.finish(task_id, "failed", reason=f"{code}: {exc.message}")
                with self._lock:
                    self.failed += 1
                return
        finally:
            path.unlink(missing_ok=True)
        observations = []
        for i, asked in enumerate(rec.tags):
            tag = normalise_tag(asked)
            label = labels.get(tag) if tag else None
            kwargs = label_value(tag, label) if tag else {}
            observations.append(
                ig.observation(f"{task_id}-{i}", asked, device_id=self.store.device_id, **kwargs)
            )
        self.store.finish(task_id, "completed", observations=observations)
        with self._lock:
            self.completed += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "workers": self.workers,
                "capacity": self.capacity,
                "admitted": self._admitted,
                "busy_seconds": round(self.busy_seconds, 4),
                "uptime_seconds": round(time.monotonic() - self.started, 4),
                "completed": self.completed,
                "failed": self.failed,
                "rejected": self.rejected,
            }

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._tmp.cleanup()
