"""One writer at a time for a file a person's answers go to (decisions, batch answers): an
exclusive flock on a lock file inside the output folder, across processes and released even
when the holder is killed; never taken through a link that leads out of the folder."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError


@contextlib.contextmanager
def locked(output: Path, name: str) -> Iterator[None]:
    """Hold `OUT/<name>` (e.g. `.orthovision/decisions.lock`) exclusively while inside."""
    path = output / name
    root, folder = os.path.realpath(output), os.path.realpath(path.parent)
    if folder != root and not folder.startswith(root.rstrip(os.sep) + os.sep):
        raise OutputError(f"cannot lock {path}: {path.parent} is a link out of {output}", path=path)
    try:
        path.parent.mkdir(exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise OutputError(f"cannot lock {path}: {exc.strerror or exc}", path=path) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock
