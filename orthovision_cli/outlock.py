"""One writer at a time for a file a person's answers go to (decisions, batch answers): an
exclusive flock on a lock file inside the output folder, across processes and released even
when the holder is killed; never taken through a link that leads out of the folder. And the
file itself replaced whole (`write_atomic`), never written through a link."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
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


def write_atomic(path: Path, text: str, what: str, newline: str | None = None) -> None:
    """Replace `path` by `text` durably (a temporary file of this writer, fsync, rename, fsync
    of the folder); a path that is not UTF-8 keeps its bytes. OutputError names `what`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.unlink(missing_ok=True)  # left by a killed writer with this pid (never followed)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline=newline) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot save {what}{path}: {exc.strerror or exc}", path=path) from exc
