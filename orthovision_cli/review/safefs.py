"""What the review server reads, previews or deletes, trusted no further than checked.

A file in OUT may have been replaced by a link to elsewhere, a FIFO or a device (by a careless
script, another user of a shared folder, or an attacker with write access to OUT only): the
server then reads nothing outside OUT and never blocks. Inputs are read only when the state
knows them (a row of the review list the state does not know is not shown), opened
non-blocking, regular files only, and through a symbolic link only when convert saw it so
(the linked file's size and modification time are still the state's).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from ..errors import UnreadableInput

_NOBLOCK = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
# Readers (Pillow, tifffile, numpy's memmap) open a path: the opened descriptor's own path
# makes them read the very file checked, not whatever the name points to a moment later.
_FD_DIR = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"


def inside(output: Path, path: Path) -> bool:
    """Whether `path`, every link resolved, lies inside `output` (resolved too)."""
    root = os.path.realpath(output)
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def out_file(output: Path, rel: Path | str) -> Path | None:
    """`output / rel` when it resolves inside OUT and is a regular file (lstat: a link is not
    one); None otherwise (absent, a link, a FIFO, a folder)."""
    path = output / rel
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or not inside(output, path):
        return None
    return path


@contextlib.contextmanager
def open_input(path: Path, size: int = -1, mtime_ns: int = -1) -> Iterator[tuple[Path, os.stat_result]]:
    """An input the state knows, opened for reading: yields a path to the opened file itself
    and its stat. `size`, `mtime_ns`: the state's record, which a symbolic link's target must
    still match (convert followed it then). Raises UnreadableInput (a link swapped in since,
    not a regular file, unreadable)."""
    try:
        fd = os.open(path, _NOBLOCK | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EMLINK):  # a link (EMLINK: the BSDs)
            raise UnreadableInput(f"cannot read file: {exc.strerror or exc}", path=path) from exc
        fd = _open_link(path, size, mtime_ns)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            # A FIFO opened non-blocking returns at once; reading it would wait for ever.
            raise UnreadableInput("not a regular file (a pipe, socket or device)", path=path)
        yield Path(f"{_FD_DIR}/{fd}"), st
    finally:
        os.close(fd)


def _open_link(path: Path, size: int, mtime_ns: int) -> int:
    try:
        fd = os.open(path, _NOBLOCK)
    except OSError as exc:
        raise UnreadableInput(f"cannot read file: {exc.strerror or exc}", path=path) from exc
    st = os.fstat(fd)
    if (st.st_size, st.st_mtime_ns) != (size, mtime_ns):
        os.close(fd)
        raise UnreadableInput(
            "a symbolic link whose target is not the file convert read; not previewed", path=path
        )
    return fd
