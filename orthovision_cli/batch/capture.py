"""Library messages caught per task in a worker process, for the file's report entry.

Pillow, tifffile and the C libraries under them (libtiff, libjpeg, libpng) say what they
tolerated in a file as Python warnings, log records, or lines printed straight on file
descriptor 2. On a batch's terminal those are noise without a file name (362 lines with
site-packages paths over a fuzz run); in the report they say which file was odd. `messages()`
records all three while one task runs: Python warnings (`InputWarning`s of our readers keep
their reason code), log records (by logger), and whatever reaches fd 2 (libtiff, libpng,
libjpeg print there), through a scratch file. Enabled only in the
worker processes of the pool (`enable`), which run one task at a time: in the main process fd 2
is the tool's own, and threads would share it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..errors import InputWarning

MAX_LINES = 20  # per file: the report stays readable
MAX_CHARS = 300
_scratch: IO[bytes] | None = None


def enable() -> None:
    """In a worker process of the pool: capture from now on."""
    global _scratch
    if _scratch is None:
        _scratch = tempfile.TemporaryFile(prefix="orthovision-stderr-")  # noqa: SIM115 - for the life of the worker


def _source(w: warnings.WarningMessage) -> str:
    if isinstance(w.message, InputWarning):
        return w.message.reason
    parts = Path(w.filename).parts
    if "site-packages" in parts:  # the library's name, not its path
        i = parts.index("site-packages")
        if i + 1 < len(parts):
            return parts[i + 1].removesuffix(".py")
    return w.category.__name__


class _Records(logging.Handler):
    """Log records of the libraries (tifffile logs what it skipped), named by their logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name.split('.')[0]}: {_line(record.getMessage())}")


def _line(text: str) -> str:
    return " ".join(text.split())[:MAX_CHARS]


@contextlib.contextmanager
def messages() -> Iterator[list[str]]:
    """The list filled, once the block ends, with one line per message (deduplicated)."""
    notes: list[str] = []
    scratch = _scratch
    if scratch is None:  # the main process (or its threads): messages go where they go
        yield notes
        return
    sys.stderr.flush()
    scratch.seek(0)
    scratch.truncate()
    saved = os.dup(2)
    os.dup2(scratch.fileno(), 2)
    records = _Records()
    root = logging.getLogger()
    root.addHandler(records)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield notes
    finally:
        root.removeHandler(records)
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        scratch.seek(0)
        printed = scratch.read(64 * 1024).decode("utf-8", "replace").splitlines()
        found = [f"{_source(w)}: {_line(str(w.message))}" for w in caught]
        found += records.lines
        found += [f"native: {_line(t)}" for t in printed if t.strip()]
        for note in found:
            if note not in notes and len(notes) < MAX_LINES:
                notes.append(note)
