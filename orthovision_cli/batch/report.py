"""The report stage: `OUT/orthovision-report.json` (this run, one line per input),
`OUT/orthovision-review.csv` (what a person must check) and the run's exit code."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from ..errors import ExitCode, OutputError
from ..types import FileStatus
from .results import RunSummary


def run_exit_code(summary: RunSummary) -> ExitCode:
    counts = summary.counts
    good = (
        counts.get(FileStatus.CONVERTED, 0)
        + counts.get(FileStatus.UNCHANGED, 0)
        + counts.get(FileStatus.PLANNED, 0)
    )
    failed = counts.get(FileStatus.FAILED, 0)
    review = counts.get(FileStatus.REVIEW, 0)
    if summary.fatal:
        return ExitCode.FATAL
    if not good and not failed and not review and not counts.get(FileStatus.SKIPPED, 0):
        return ExitCode.NOTHING_FOUND  # nothing that is an image
    if review:
        # Files waiting for a person are a normal outcome, never a disaster (issue 21): 4 whether
        # some or all of them wait, and whatever else failed.
        return ExitCode.SOME_FAILED
    if failed and not good:
        return ExitCode.FATAL
    if failed:
        return ExitCode.SOME_FAILED
    return ExitCode.OK


def report_head(summary: RunSummary) -> dict[str, object]:
    """The report's keys before `files`: the same in the file and in `convert --json`."""
    return {
        "tool": "orthovision-cli",
        "exit_code": int(summary.exit_code),
        "fatal": summary.fatal,
        "counts": summary.counts,
        "seconds": round(summary.seconds, 3),
        "warnings": summary.warnings,
        "superseded": summary.superseded,
        "visits": summary.visits,
    }


def write_report(summary: RunSummary) -> Path:
    """Both files, each replaced whole; raises OutputError (a full disk) for the run to stop."""
    out = summary.output
    report = report_head(summary)
    files = [r.as_dict() for r in sorted(summary.results, key=lambda r: r.rel)]
    path = out / "orthovision-report.json"
    tmp = path.with_name(path.name + ".tmp")
    rpath = out / "orthovision-review.csv"
    try:
        # One file per line, each by the C encoder (an indented dump runs in pure Python).
        head = json.dumps(report)[:-1]
        body = ",\n".join(json.dumps(f) for f in files)
        # json escapes a name that is not UTF-8 as \udcXX: Python's json.loads and
        # os.fsencode give back its exact bytes.
        tmp.write_text(f'{head}, "files": [\n{body}\n]}}\n', encoding="ascii")
        os.replace(tmp, path)
        # Sorted by name: the list (and the page) keep one order from run to run.
        review = sorted((r for r in summary.results if r.status == FileStatus.REVIEW), key=lambda r: r.rel)
        if review:
            # A path that is not UTF-8 keeps its exact bytes (items.py reads them back so).
            with rpath.open("w", newline="", encoding="utf-8", errors="surrogateescape") as f:
                w = csv.writer(f)
                w.writerow(["input", "reason", "message"])
                for r in review:
                    w.writerow([r.path, r.reason, r.message])
        elif rpath.exists():
            rpath.unlink()
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write the report {path}: {exc.strerror or exc}", path=path) from exc
    return path
