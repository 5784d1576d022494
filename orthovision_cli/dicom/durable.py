"""Making written files durable and visible: fsync, syncfs and the group commit of many
temporary files at once.

Standard library only: the main process commits what the workers wrote without loading numpy or
pydicom (issue 25: a nightly run's coordinator stays light).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import OutputError


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a rename in it) by its path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@functools.cache
def _syncfs_function() -> Callable[[int], int] | None:
    # Looked up once a process: ctypes.util.find_library runs ldconfig (and more) each call, which
    # cost about a millisecond an input when every commit batch asked again. The running program
    # links libc already, so dlopen(NULL) finds syncfs without any search.
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    return fn


def sync_filesystem(path: Path) -> bool:
    """Make durable everything written to the filesystem holding `path` with one syncfs; False
    where syncfs is missing (then fsync each file). Raises OSError."""
    syncfs = _syncfs_function()
    if syncfs is None:
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        return syncfs(fd) == 0
    finally:
        os.close(fd)


def commit_batch(pairs: list[tuple[Path, Path]], *, fsync: bool = True) -> None:
    """Commit many temporary files at once: their data made durable with one syncfs (or an
    fsync each where syncfs is missing), then each renamed into place, then each folder synced
    once. Far fewer journal commits than an fsync + folder fsync per file."""
    if not pairs:
        return
    try:
        if fsync:
            syncfs = _syncfs_function()
            done = False
            if syncfs is not None:
                fd = os.open(pairs[0][0].parent, os.O_RDONLY)
                try:
                    done = syncfs(fd) == 0
                finally:
                    os.close(fd)
            if not done:
                for tmp, _ in pairs:
                    fsync_path(tmp)
        for tmp, dest in pairs:
            os.replace(tmp, dest)
        if fsync:
            for folder in {dest.parent for _, dest in pairs}:
                fsync_path(folder)
    except OSError as exc:
        for tmp, _ in pairs:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {pairs[0][1]}: {exc.strerror or exc}", path=pairs[0][1]) from exc


def write_all(fd: int, data: bytes | memoryview) -> None:
    """All of `data` written at `fd`'s position (a write may take less)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def copy_range(src_fd: int, dst_fd: int, start: int, end: int) -> None:
    """Bytes [start, end) of `src_fd` written at `dst_fd`'s position, by the kernel where it can
    (copy_file_range), else read and written."""
    offset, remaining = start, end - start
    while remaining > 0:
        try:
            n = os.copy_file_range(src_fd, dst_fd, remaining, offset)
        except OSError:
            n = 0
        if n == 0:  # not supported here (or EOF): fall back to plain reads
            while remaining > 0:
                chunk = os.pread(src_fd, min(remaining, 1 << 22), offset)
                if not chunk:
                    raise OSError("source file shrank while being copied")
                write_all(dst_fd, chunk)
                offset += len(chunk)
                remaining -= len(chunk)
            return
        offset += n
        remaining -= n
