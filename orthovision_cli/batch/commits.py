"""Group commit: make finished files durable and visible in batches, off the workers' path.

Workers write each DICOM under a temporary name and start its disk write; this thread makes the
files durable together (one syncfs for many files instead of an fsync each), renames them into
place and syncs their folders, while the workers go on. Crash safety is unchanged: a file gets
its name only after its data is on disk, and a temporary file left by a crash is deleted by the
next run.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Any

from ..dicom.durable import commit_batch
from ..errors import OutputError
from .state import STATE_DIR

MAX_BATCH = 64


class Committer:
    def __init__(self, *, fsync: bool = True) -> None:
        self.fsync = fsync
        self._todo: queue.Queue[Any] = queue.Queue()
        self._done: queue.Queue[Any] = queue.Queue()
        self._error: OutputError | None = None
        self._thread = threading.Thread(target=self._run, name="commit", daemon=True)
        self._thread.start()

    def submit(self, item: Any, pairs: list[tuple[str, str]]) -> None:
        """`item` comes back from `finished()` once every (temp, final) pair is committed."""
        self._todo.put((item, pairs))

    def finished(self) -> list[Any]:
        """Items committed so far (without waiting). Raises the first commit error, so a full
        disk stops the run at once."""
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                break
        if self.error is not None and not out:
            raise self.error
        return out

    def close(self) -> list[Any]:
        """Commit what is left and stop; the items committed since the last call (check
        `error` afterwards: items after a failed batch are discarded, not committed)."""
        self._todo.put(None)
        self._thread.join()
        out = []
        while not self._done.empty():
            out.append(self._done.get_nowait())
        return out

    @property
    def error(self) -> OutputError | None:
        return self._error

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._todo.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._todo.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            if self._error is not None:
                self._discard(batch)
                continue
            pairs = [(Path(t), Path(d)) for _, ps in batch for t, d in ps]
            try:
                commit_batch(pairs, fsync=self.fsync)
            except OutputError as exc:
                self._error = exc
                continue
            for item, _ in batch:
                self._done.put(item)

    @staticmethod
    def _discard(batch: list[Any]) -> None:
        for _, pairs in batch:
            for tmp, _ in pairs:
                Path(tmp).unlink(missing_ok=True)


def remove_temp_files(output: Path, prefix: str) -> int:
    """Delete temp files a killed run left behind (only ever called under the state's lock)."""
    removed = 0
    for folder, dirs, files in os.walk(output):
        dirs[:] = [d for d in dirs if d != STATE_DIR]
        for name in files:
            if name.startswith(prefix):
                try:
                    os.unlink(os.path.join(folder, name))
                    removed += 1
                except OSError:
                    pass
    return removed
