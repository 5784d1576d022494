"""The run's lease (`convert --cluster`): what keeps a Dask worker from finishing a file for a run
that has gone (its coordinator killed, or already finished).

The lease is a file in the state folder that the coordinator rewrites at its start (its run
token) and end (empty); each writing task checks it and deletes its temporary files if the lease
is not its own. The coordinator writes the lease *before* it sweeps temporary files, and a task
writes its files *before* it reads the lease, so every stray file is either seen by a sweep or
removed by its own task.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..defaults import TMP_PREFIX

LEASE = "cluster-lease"  # under the state folder


def lease_holds(lease: str, token: str) -> bool:
    try:
        return Path(lease).read_text().strip() == token
    except OSError:
        return False


def write_lease(path: Path, text: str) -> None:
    """The lease, replaced atomically and durably: the run's token, or "" once the run ends."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sweep_temporaries(folder: Path) -> None:
    """Remove the temporary files tasks left in `folder`."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(TMP_PREFIX):
            with contextlib.suppress(OSError):
                os.unlink(folder / name)
