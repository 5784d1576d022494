"""Where the tests' real images live: tests/data (see its NOTICE.md), in every clone."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
LABELS_CSV = DATA / "labels.csv"
ADA1100_REFERENCE = DATA / "ada1100"
