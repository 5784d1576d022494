"""What a run says about each input (`FileResult`) and about itself (`RunSummary`), and the
progress events it sends to its caller."""

from __future__ import annotations

import json
import os
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..dicom.durable import copy_range
from ..dicom.plan import PlanInput
from ..errors import ExitCode
from ..labels.model import Labels
from ..types import EventKind, FileStatus
from .visits import Visits
from .walk import FoundInput

if TYPE_CHECKING:  # cards.py builds results
    from .cards import Card


@dataclass(slots=True)  # one per input, many kept: no __dict__ each
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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileResult:
        """An entry of the report (`as_dict`) as a result again."""
        return cls(
            d["input"],
            d["rel"],
            d["status"],
            d["reason"],
            d["message"],
            d["outputs"],
            d["labels"],
            d["sha256"],
            d["seconds"],
            superseded=d.get("superseded", []),
            warnings=d["warnings"],
        )


@dataclass(slots=True)
class ReportLine:
    """A result made straight as its report line: a re-run's unchanged input, its state row's
    JSON put in as it is, never decoded and encoded again (issue 25: a re-run of 100,000
    inputs). The line is what `FileResult.as_dict` gives, encoded."""

    rel: str
    status: str
    line: bytes  # one JSON object, ending in a newline


_UNCHANGED = str(FileStatus.UNCHANGED)


# Outcomes that need nobody: every other status (failed, review, skipped, ignored, warning), and
# any input a reader or library warned about, needs a person's attention (the report lists it).
QUIET = frozenset({FileStatus.CONVERTED, FileStatus.UNCHANGED, FileStatus.PLANNED})


def needs_attention(r: FileResult) -> bool:
    return r.status not in QUIET or bool(r.warnings)


class ResultLog:
    """A run's results as they come, each kept as its report line (`as_dict`, JSON) in an
    unlinked temporary file of `folder` (gone with the process, even after a kill -9): a large
    batch's results are not held in memory (issue 25). In memory, per result: its `rel` (the
    report's order, the walk's string), where its line starts, its status and whether it needs
    attention (about 25 bytes against 3 KB for a FileResult with its labels). Reading gives
    FileResults again (new objects: a result is final once appended)."""

    def __init__(self, folder: Path, results: Iterable[FileResult | ReportLine] = ()) -> None:
        self._file = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115 (open as long as the log)
        self._end = 0
        self._buf = bytearray()  # lines not yet written, from offset _end - len(_buf): a write a MiB
        self._rels: list[str] = []
        self._starts = array("q")  # where each line starts: it ends where the next one starts
        self._kinds = bytearray()  # its status (index in _statuses), + 128 if it needs attention
        self._statuses: list[str] = []
        self._counts: dict[str, int] = {}
        self.superseded = 0  # earlier instances replaced, over all results
        self.extend(results)

    def append(self, r: FileResult | ReportLine) -> None:
        if isinstance(r, ReportLine):  # quiet (unchanged), nothing superseded
            self.append_line(r)
            return
        line = json.dumps(r.as_dict()).encode("ascii") + b"\n"  # \udcXX escapes: ASCII
        self.superseded += len(r.superseded)
        self._add(r.rel, line, str(r.status), 128 if needs_attention(r) else 0)

    def append_line(self, r: ReportLine) -> None:
        """`append` of a quiet line (a re-run's unchanged input: 100,000 a nightly run)."""
        self._add(r.rel, r.line, r.status, 0)

    def append_quiet(self, rels: list[str], lines: list[bytes]) -> None:
        """`append_line` of many unchanged inputs' lines at once (`unchanged_line(...).line`):
        a nightly run's 100,000, without a call and a list step each."""
        if self._count_quiet(rels, [len(line) for line in lines]):
            joined = b"".join(lines)
            self._buf += joined
            self._end += len(joined)
            if len(self._buf) >= 1 << 20:
                self._flush()

    def adopt(self, rels: list[str], lengths: Sequence[int]) -> None:
        """Unchanged inputs' lines that another process wrote into this log's file (`fileno`)
        from its start, each one's length: the log must be empty until then."""
        if self._end or self._buf:
            raise ValueError("lines are adopted only by an empty log")
        if self._count_quiet(rels, lengths):
            self._end = sum(lengths)

    def _count_quiet(self, rels: list[str], lengths: Sequence[int]) -> bool:
        if not lengths:
            return False
        if _UNCHANGED not in self._counts:
            self._statuses.append(_UNCHANGED)
        self._counts[_UNCHANGED] = self._counts.get(_UNCHANGED, 0) + len(lengths)
        self._rels.extend(rels)
        self._starts.extend(accumulate(lengths[:-1], initial=self._end))
        self._kinds.extend(bytes([self._statuses.index(_UNCHANGED)]) * len(lengths))
        return True

    def fileno(self) -> int:
        return self._file.fileno()

    def _add(self, rel: str, line: bytes, status: str, attention: int) -> None:
        self._buf += line
        count = self._counts.get(status)
        if count is None:
            self._statuses.append(status)
            count = 0
        self._counts[status] = count + 1
        self._rels.append(rel)
        self._starts.append(self._end)
        self._kinds.append(self._statuses.index(status) + attention)
        self._end += len(line)
        if len(self._buf) >= 1 << 20:
            self._flush()

    def extend(self, results: Iterable[FileResult | ReportLine]) -> None:
        for r in results:
            self.append(r)

    def __len__(self) -> int:
        return len(self._rels)

    def _flush(self) -> None:
        if self._buf:
            os.pwrite(self._file.fileno(), self._buf, self._end - len(self._buf))
            self._buf.clear()

    def _line(self, i: int) -> bytes:
        self._flush()
        start = self._starts[i]
        end = self._starts[i + 1] if i + 1 < len(self._starts) else self._end
        return os.pread(self._file.fileno(), end - start, start)

    def _result(self, i: int) -> FileResult:
        return FileResult.from_dict(json.loads(self._line(i)))

    def __getitem__(self, i: int) -> FileResult:
        return self._result(range(len(self))[i])

    def __iter__(self) -> Iterator[FileResult]:
        for i in range(len(self)):
            yield self._result(i)

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def of_status(self, status: FileStatus) -> list[FileResult]:
        if status not in self._statuses:
            return []
        code = self._statuses.index(status)
        return [self._result(i) for i, kind in enumerate(self._kinds) if kind & 127 == code]

    def report_lines(self) -> Iterator[tuple[bytes, bool]]:
        """(each result's line, whether it needs attention), sorted by `rel`. Read a window of
        the log at a time: lines that follow each other in the log mostly do in the report too
        (a read a MiB, not a read a line)."""
        self._flush()
        fd, starts, end = self._file.fileno(), self._starts, self._end
        n = len(starts)
        window, at = b"", 0  # the log's bytes from offset `at`
        for i in sorted(range(n), key=self._rels.__getitem__):
            start = starts[i]
            stop = starts[i + 1] if i + 1 < n else end
            if start < at or stop > at + len(window):
                at = start
                window = os.pread(fd, max(stop - start, 1 << 20), start)
            yield window[start - at : stop - at], self._kinds[i] >= 128

    def copy_report(self, dst_fd: int) -> tuple[int, list[bytes]]:
        """`report_lines` written at `dst_fd`'s position, runs of lines that follow each other in
        the log copied by the kernel (a nightly run's 100,000 unchanged lines are one run, not
        read into this process); the number of lines, and those that need attention."""
        self._flush()
        src, starts, end, kinds = self._file.fileno(), self._starts, self._end, self._kinds
        n = len(starts)
        attention: list[bytes] = []
        run_start = run_stop = -1
        for i in sorted(range(n), key=self._rels.__getitem__):
            start = starts[i]
            stop = starts[i + 1] if i + 1 < n else end
            if kinds[i] >= 128:  # few: read one at a time
                attention.append(self._line(i).rstrip(b"\n"))
            if start != run_stop:
                if run_start >= 0:
                    copy_range(src, dst_fd, run_start, run_stop)
                run_start = start
            run_stop = stop
        if run_start >= 0:
            copy_range(src, dst_fd, run_start, run_stop)
        return n, attention

    def close(self) -> None:
        self._file.close()


@dataclass
class RunSummary:
    results: list[FileResult] | ResultLog
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
    visits: Visits = field(default_factory=Visits)

    @property
    def counts(self) -> dict[str, int]:
        if isinstance(self.results, ResultLog):
            return self.results.counts
        out: dict[str, int] = {}
        for r in self.results:
            out[str(r.status)] = out.get(str(r.status), 0) + 1
        return out

    @property
    def superseded(self) -> int:
        """Earlier instances this run replaced (their inputs' plans changed)."""
        if isinstance(self.results, ResultLog):
            return self.results.superseded
        return sum(len(r.superseded) for r in self.results)

    def of_status(self, status: FileStatus) -> list[FileResult]:
        if isinstance(self.results, ResultLog):
            return self.results.of_status(status)
        return [r for r in self.results if r.status == status]


@dataclass(slots=True)  # one per input, many kept: no __dict__ each
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


def unfinished_results(todo: Iterable[FoundInput], results: Iterable[FileResult]) -> list[FileResult]:
    """The inputs of a run that had to stop (a full disk) and that no result speaks of yet: the
    report lists every input, and these are done by the next run (no state row is written)."""
    done = {r.path for r in results if r.status != FileStatus.WARNING}
    message = "not written: the run stopped before this file; run the same command again"
    return [
        FileResult(f.path_str, f.rel, FileStatus.FAILED, "run-stopped", message)
        for f in todo
        if f.path_str not in done
    ]
