"""A conformance run's result: one check per line, each PASS, FAIL or SKIP with its evidence."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Check:
    name: str
    ok: bool | None  # None: skipped (optional feature absent)
    evidence: str

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "SKIP"}[self.ok]


@dataclass
class Report:
    base_url: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.ok is not False for c in self.checks) and bool(self.checks)

    def add(self, name: str, ok: bool | None, evidence: str) -> bool:
        self.checks.append(Check(name, ok, " ".join(evidence.split())[:400]))
        return bool(ok)

    def as_dict(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "passed": self.passed,
            "checks": [{"name": c.name, "result": c.verdict, "evidence": c.evidence} for c in self.checks],
        }


def iter_rows(report: Report) -> Iterator[tuple[str, str, str]]:
    for c in report.checks:
        yield c.verdict, c.name, c.evidence
