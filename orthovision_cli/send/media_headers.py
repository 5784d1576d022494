"""The headers `dicomdir` needs, read once per instance (never the pixels), in worker processes
when there are many (issue 25): parsing a header with pydicom costs about ten times more than
the rest of what an instance needs (its place in the record tree, its IMAGE record, its copy),
so on a 2-core machine two readers feed the one process that builds the File-set. Results come
back in input order, so the same output gives the same File IDs.
"""

from __future__ import annotations

import contextlib
import functools
import io
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .media_fast import header_elements
from .media_keys import header_tags, image_values, level_keys

WHOLE = 1 << 20  # a file up to this size is read in one go (parsed from memory: faster)
HEAD = 1 << 16  # of a larger file, what is read first: its header, for `header_elements`
PARALLEL_FROM = 200  # fewer instances: read in this process (starting workers costs more)
MAX_READERS = 4


@dataclass(frozen=True)
class Header:
    keys: tuple[str, str, str, str]  # Patient ID (or invented), Study, Series, SOP Instance UID
    image: tuple[str, str, str, str, str]  # what the IMAGE record holds (media_keys.image_values)
    invented: str | None  # the line for an invented Instance Number
    # The elements the PATIENT/STUDY/SERIES records read, as read (cheap to pass between
    # processes); `dataset()` makes them a pydicom Dataset, needed for a new record only.
    elements: tuple[Any, ...]

    def dataset(self) -> Any:
        from pydicom.dataset import Dataset
        from pydicom.tag import BaseTag

        return Dataset({BaseTag(elem.tag): elem for elem in self.elements})


def read_header(path: Path) -> Header | str:
    """The header of the PS3.10 file at `path`; or, in our words, why it cannot be recorded."""
    from pydicom import dcmread
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import UID

    try:
        with path.open("rb") as f:
            whole = os.fstat(f.fileno()).st_size <= WHOLE
            data = f.read(WHOLE if whole else HEAD)
            fast = header_elements(data, _wanted())
            if fast is not None:  # its bytes walked (media_fast.py): pydicom's raw elements
                ds = Dataset(fast[0])  # type: ignore[arg-type]  # int keys: pydicom takes them
                ds.file_meta = FileMetaDataset()
                ds.file_meta.TransferSyntaxUID = UID(fast[1])
            else:
                if not whole:
                    f.seek(0)
                src = io.BytesIO(data) if whole else f
                ds = dcmread(src, stop_before_pixels=True, specific_tags=header_tags())
        # As read (raw: `media_records.level_records` copies their bytes), before the keys
        # below convert some of them.
        kept = tuple(elem for tag in header_tags() if (elem := ds.get_item(tag)) is not None)
        keys = level_keys(ds)
        image, invented = image_values(ds)
        return Header(keys, image, invented, kept)
    except (OSError, InvalidDicomError, ValueError, KeyError, AttributeError, TypeError) as exc:
        return our_words(exc)


@functools.cache
def _wanted() -> frozenset[int]:
    return frozenset(header_tags())


def our_words(exc: BaseException) -> str:
    """pydicom's reason without its advice to programmers; an OS error's own words."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split())
    return text.split(". See DICOM", 1)[0].split(". Either", 1)[0] or type(exc).__name__


def readers() -> int:
    """Worker processes for the headers: the CPUs this process may use, at most MAX_READERS."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_READERS, cpus))


def headers(paths: Sequence[Path], jobs: int | None = None) -> Iterator[Header | str]:
    """`read_header` of each path, in order; in `jobs` worker processes when there are many."""
    jobs = readers() if jobs is None else jobs
    if jobs <= 1 or len(paths) < PARALLEL_FROM:
        yield from map(read_header, paths)
        return
    ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with _ignoring_ctrl_c():  # inherited by the workers: Ctrl-C reaches this process only
        pool = ctx.Pool(jobs)
    with pool:  # leaving (the end, an error, Ctrl-C) terminates the workers
        yield from pool.imap(read_header, paths, chunksize=32)


@contextlib.contextmanager
def _ignoring_ctrl_c() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; its own Ctrl-C handling stays
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
