"""What a run says about each input (`FileResult`) and about itself (`RunSummary`), and the
progress events it sends to its caller."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..dicom.plan import PlanInput
from ..errors import ExitCode
from ..labels.model import Labels
from ..types import EventKind, FileStatus
from .walk import FoundInput

if TYPE_CHECKING:  # cards.py builds results
    from .cards import Card


@dataclass
class FileResult:
    path: str
    rel: str
    status: FileStatus | str
    reason: str = ""
    message: str = ""
    outputs: list[str] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""
    seconds: float = 0.0
    # Written under temporary names, awaiting fsync and rename by the main process.
    pending: list[tuple[str, str]] = field(default_factory=list)
    # Earlier instances of this input that this run replaced (SupersededRecord.as_dict()).
    superseded: list[dict[str, Any]] = field(default_factory=list)
    # What a reader or library tolerated in this file (batch/capture.py), one line each.
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        extra = {"superseded": self.superseded} if self.superseded else {}
        return {
            "input": self.path,
            "rel": self.rel,
            "sha256": self.content_hash,
            "status": str(self.status),
            "reason": self.reason,
            "message": self.message,
            "outputs": self.outputs,
            "labels": self.labels,
            "seconds": round(self.seconds, 4),
            "warnings": self.warnings,
            **extra,
        }


@dataclass
class RunSummary:
    results: list[FileResult]
    exit_code: ExitCode
    output: Path
    report_path: Path | None = None
    fatal: str = ""
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # one line each, e.g. a stale decision
    # Warnings about the run as a whole (also in `warnings`), shown with the summary: instances
    # without a Patient ID.
    notices: list[str] = field(default_factory=list)
    # Per visit (a study of photographs): the views present, missing, duplicated (records.py).
    visits: list[dict[str, Any]] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[str(r.status)] = out.get(str(r.status), 0) + 1
        return out

    @property
    def superseded(self) -> int:
        """Earlier instances this run replaced (their inputs' plans changed)."""
        return sum(len(r.superseded) for r in self.results)


@dataclass
class Analysed:
    """An input after the analyse stage: its plan input, or the result that ends it."""

    found_path: str
    rel: str
    size: int
    mtime_ns: int
    plan_input: PlanInput | None = None
    error: FileResult | None = None
    # For a file sent to review: what would be planned, should a person confirm it (--confirm).
    review_input: PlanInput | None = None
    warnings: list[str] = field(default_factory=list)  # from its analysis (batch/capture.py)
    # A patient card (batch/cards.py): not converted, its patient goes to the visit after it.
    card: Card | None = None


@dataclass
class Classified:
    """What `orthovision classify` shows for one input: its labels, or why it has none."""

    path: str
    rel: str
    labels: Labels
    error: str | None = None
    unsupported: bool = False  # not JPEG, TIFF, PNG or JPEG 2000 (classify leaves it out)


Event = Callable[[EventKind | str, int, int, FileResult | None], None]


def ignore_event(kind: EventKind | str, done: int, total: int, result: FileResult | None) -> None:
    """The event sink of a caller that shows no progress."""


def unfinished_results(todo: Iterable[FoundInput], results: list[FileResult]) -> list[FileResult]:
    """The inputs of a run that had to stop (a full disk) and that no result speaks of yet: the
    report lists every input, and these are done by the next run (no state row is written)."""
    done = {r.path for r in results if r.status != FileStatus.WARNING}
    message = "not written: the run stopped before this file; run the same command again"
    return [
        FileResult(str(f.path), f.rel, FileStatus.FAILED, "run-stopped", message)
        for f in todo
        if str(f.path) not in done
    ]


def in_input_order(stream: Iterable[Analysed], paths: list[str]) -> Iterator[Analysed]:
    """`stream` (in completion order) in the order of `paths`: a result that comes early waits
    for those before it (at most the pool's tasks in flight are held)."""
    index = {p: i for i, p in enumerate(paths)}
    held: dict[int, Analysed] = {}
    following = 0
    for a in stream:
        held[index.get(a.found_path, len(paths) + len(held))] = a
        while following in held:
            yield held.pop(following)
            following += 1
    for i in sorted(held):
        yield held[i]
