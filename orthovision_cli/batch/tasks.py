"""The stages as the main process hands them to the pool, and what it needs to know of them.

The stage functions (`analyse.analyse`, `write.write_job`) load numpy, Pillow and pydicom. A task
names its function by module: the main process would load those only to name them. The workers
load the stages when they start (`load_stages`); the main process names them here and stays light
(issue 25: a nightly run's coordinator plans, commits and records, and is the critical path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..config import ConvertSettings
from ..decisions import DecisionBook
from ..memory import SMALL_TASK, analyse_estimate
from ..types import FileStatus
from .results import Analysed, FileResult
from .walk import FoundInput

if TYPE_CHECKING:
    from .record import WriteJob


def load_stages() -> None:
    """In a worker, at its start: the stages and what they load (numpy, Pillow, pydicom,
    the readers and the writer), before its first task."""
    from . import analyse, write  # noqa: F401


def analyse(found: FoundInput) -> Analysed:
    """`analyse.analyse`, in a worker."""
    from .analyse import analyse as stage

    return stage(found)


def write_job(job: WriteJob) -> FileResult:
    """`write.write_job`, in a worker."""
    from .write import write_job as stage

    return stage(job)


def analyse_weight(settings: ConvertSettings) -> Callable[[FoundInput], int]:
    """The memory one input's analysis may take (--max-memory), from its size and suffix."""
    classify = settings.use_models or bool(settings.remote)

    def weight(found: FoundInput) -> int:
        if not classify or found.problem:
            return SMALL_TASK
        suffix = found.path.suffix
        if suffix.lower() in (".jpg", ".jpeg", ".jpe", ".jfif"):
            return SMALL_TASK
        try:
            size = found.path.stat().st_size
        except OSError:
            return SMALL_TASK
        return analyse_estimate(size, suffix, classify)

    return weight


def stale_decisions(analysed: list[Analysed], decisions: DecisionBook) -> list[FileResult]:
    """A person's decision about content that has changed since is ignored, and said so."""
    out = []
    for a in analysed:
        digest = a.plan_input.content_hash if a.plan_input else (a.error.content_hash if a.error else "")
        if decisions.is_stale(a.found_path, digest):
            out.append(
                FileResult(
                    a.found_path,
                    a.rel,
                    FileStatus.WARNING,
                    "decision-stale",
                    "the file changed since a person decided its labels; the decision is ignored",
                )
            )
    return out
