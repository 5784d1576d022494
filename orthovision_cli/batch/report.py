"""The report stage: `OUT/orthovision-report.json` (this run's summary and the inputs that need
attention), `OUT/orthovision-report.jsonl` (every input of this run, one JSON object a line),
`OUT/orthovision-review.csv` (what a person must check) and the run's exit code.

The summary stays small whatever the batch (a million inputs give a 0.5 GB list that most tools
cannot load as one document); the lines are written one at a time, each by the C encoder."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import ExitCode, OutputError
from ..types import FileStatus
from .results import FileResult, ResultLog, RunSummary, needs_attention

REPORT = "orthovision-report.json"
LINES = "orthovision-report.jsonl"


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


def report_head(summary: RunSummary, visits: bool = True) -> dict[str, object]:
    """The report's summary keys: the same in the file and in `convert --json` (`visits`
    False: all but the visits)."""
    head: dict[str, object] = {
        "tool": "orthovision-cli",
        "exit_code": int(summary.exit_code),
        "fatal": summary.fatal,
        "counts": summary.counts,
        "seconds": round(summary.seconds, 3),
        "warnings": summary.warnings,
        "notices": summary.notices,
        "superseded": summary.superseded,
    }
    if visits:
        head["visits"] = list(summary.visits)
    return head


def in_report_order(results: Iterable[FileResult]) -> list[FileResult]:
    """By path below the input root: the report (and the page) keep one order from run to run."""
    return sorted(results, key=lambda r: r.rel)


def _lines(results: list[FileResult]) -> Iterator[tuple[bytes, bool]]:
    """(each input's line, whether it needs attention), in the report's order."""
    for r in in_report_order(results):
        yield json.dumps(r.as_dict()).encode("ascii") + b"\n", needs_attention(r)


def write_report(summary: RunSummary) -> Path:
    """The lines, then the summary, then the review list, each replaced whole (temp + rename);
    raises OutputError (a full disk) for the run to stop."""
    out = summary.output
    path, lines = out / REPORT, out / LINES
    tmps = [p.with_name(p.name + ".tmp") for p in (lines, path)]
    rpath = out / "orthovision-review.csv"
    attention: list[bytes] = []
    try:
        n = 0
        # json escapes a name that is not UTF-8 as \udcXX: Python's json.loads and os.fsencode
        # give back its exact bytes; so every line is ASCII.
        with tmps[0].open("wb") as f:
            if isinstance(summary.results, ResultLog):  # a run's: copied from its log
                n, attention = summary.results.copy_report(f.fileno())
            else:
                for line, needed in _lines(summary.results):
                    f.write(line)
                    n += 1
                    if needed:
                        attention.append(line.rstrip(b"\n"))
        os.replace(tmps[0], lines)
        # Written piece by piece: a first run of 100,000 photographs has some 12,500 visits,
        # never joined into one string (issue 25); the visits come last in the summary.
        fields = report_head(summary, visits=False)
        with tmps[1].open("wb") as f:
            f.write(json.dumps({**fields, "files_total": n, "files_jsonl": LINES})[:-1].encode("ascii"))
            f.write(b', "visits": [')
            for i, raw in enumerate(summary.visits.raw()):
                f.write(b"," + raw if i else raw)
            f.write(b'], "attention": [\n')
            for i, line in enumerate(attention):  # one input a line, as in the .jsonl
                f.write(b",\n" + line if i else line)
            f.write(b"\n]}\n")
        os.replace(tmps[1], path)
        review = in_report_order(summary.of_status(FileStatus.REVIEW))
        if review:
            # A path that is not UTF-8 keeps its exact bytes (items.py reads them back so).
            with rpath.open("w", newline="", encoding="utf-8", errors="surrogateescape") as fh:
                w = csv.writer(fh)
                w.writerow(["input", "reason", "message"])
                for r in review:
                    w.writerow([r.path, r.reason, r.message])
        elif rpath.exists():
            rpath.unlink()
    except OSError as exc:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write the report {path}: {exc.strerror or exc}", path=path) from exc
    return path


def read_report(output: Path) -> dict[str, Any]:
    """The summary of the last run into `output` (ValueError or OSError if there is none)."""
    data = json.loads((output / REPORT).read_text(encoding="ascii"))
    if not isinstance(data, dict):
        raise ValueError(f"{output / REPORT} is not a report")
    return data


def report_files(output: Path) -> Iterator[dict[str, Any]]:
    """Every input's entry of the last run into `output`: the .jsonl's lines, or the `files` of a
    report written before there were lines (which held every input)."""
    data = read_report(output)
    if isinstance(data.get("files"), list):
        yield from data["files"]
        return
    with (output / LINES).open(encoding="ascii") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
