"""The conformance kit: checks any service against the Orthovision AI IG (`orthovision
conformance URL`). The one part of `fhir` that speaks HTTP (httpx); the rest is plain data."""

from __future__ import annotations

from .kit import UNSUPPORTED_TAG, Conformance, run_conformance
from .report import Check, Report, iter_rows
from .sample import sample_image

__all__ = [
    "UNSUPPORTED_TAG",
    "Check",
    "Conformance",
    "Report",
    "iter_rows",
    "run_conformance",
    "sample_image",
]
