"""Where the tests' real images live: tests/data (see its NOTICE.md), in every clone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
# A real face the default pack sends to a person: the smile head says smile (0.74), the
# expression model says neutral (0.24 happy): they disagree (London set, CC BY 4.0).
UNSURE_FACE = DATA / "photos" / "faces_london" / "smile" / "082_08.jpg"
LABELS_CSV = DATA / "labels.csv"
ADA1100_REFERENCE = DATA / "ada1100"


def orthovision(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`orthovision ARGS...` in a fresh interpreter, run to its end, its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "orthovision_cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def run_report(out: Path) -> dict[str, Any]:
    """The run report in `out` (orthovision-report.json) with every input's entry, read from
    orthovision-report.jsonl, as `files` (as the report held them before issue 25)."""
    from orthovision_cli.batch.report import read_report, report_files

    return {**read_report(out), "files": list(report_files(out))}
