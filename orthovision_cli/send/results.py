"""What a send run reports: one result per instance and destination, and the run's summary
(counts, destination errors, exit code)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ExitCode


@dataclass
class InstanceResult:
    rel: str
    sop_uid: str
    destination: str
    status: str  # stored, failed, unchanged (stored by an earlier run), superseded (never sent)
    reason: str = ""
    message: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.rel,
            "sop_instance_uid": self.sop_uid,
            "destination": self.destination,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
        }


@dataclass
class SendSummary:
    results: list[InstanceResult] = field(default_factory=list)
    destination_errors: dict[str, str] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. a rejection note that cannot be made
    instances: int = 0
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out

    @property
    def exit_code(self) -> ExitCode:
        counts = self.counts
        good = counts.get("stored", 0) + counts.get("unchanged", 0)
        bad = counts.get("failed", 0) + len(self.unreadable)
        if self.destination_errors:
            return ExitCode.DESTINATION
        if not self.instances and not self.unreadable:
            return ExitCode.NOTHING_FOUND
        if bad and not good:
            return ExitCode.FATAL
        return ExitCode.SOME_FAILED if bad else ExitCode.OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "exit_code": int(self.exit_code),
            "counts": self.counts,
            "instances": self.instances,
            "destination_errors": self.destination_errors,
            "unreadable": self.unreadable,
            "warnings": self.warnings,
            "seconds": round(self.seconds, 3),
            "results": [r.as_dict() for r in self.results],
        }


OnResult = Callable[[InstanceResult], None]
