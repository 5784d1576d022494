"""Worker processes that never outlive the run that started them.

A `kill -9` of the main process does not reach its pool workers: they would live on as orphans,
finish the file they hold and write it while the next run is already working on the same tree.
Each worker therefore asks the kernel to kill it when its parent dies (Linux), or watches for
that itself (elsewhere).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int) -> None:
    """Call first thing in a worker; `parent` is the main process's pid."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            _watch(parent)
    else:
        _watch(parent)
    if os.getppid() != parent:  # the parent died before the kernel was told to watch
        os._exit(1)


def _watch(parent: int) -> None:
    def loop() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=loop, name="orthovision-parent-watch", daemon=True).start()
