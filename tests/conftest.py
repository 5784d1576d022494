"""Shared fixtures: where the real test images are, and the external validators."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"


def require_tool(name: str) -> str:
    """The path of an external program; in CI its absence is a failure, not a skip."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (.ci/run installs it)")
        pytest.skip(f"{name} is not installed")
    return path


# DICOM CP-1570 (final text 2025) and DENT-OIP put View Code Sequence (with View Modifier
# Code Sequence) in the VL Image module of dental photographs; dciodvfy's tables (2026-09 too)
# do not have it yet and warn "not present in standard DICOM IOD". Only that warning is allowed,
# and only where a test asks for it.
VIEW_CODE_WARNING = "ViewCodeSequence(0054,0220)"


def dciodvfy(path: Path, allow: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """(errors, warnings) from dicom3tools' dciodvfy, without the DICOMDIR-only warnings and
    without warnings that contain one of `allow`."""
    exe = require_tool("dciodvfy")
    proc = subprocess.run([exe, "-new", str(path)], capture_output=True, text=True, timeout=120)
    lines = (proc.stdout + proc.stderr).splitlines()
    errors = [ln for ln in lines if ln.startswith("Error")]
    warnings = [
        ln
        for ln in lines
        if ln.startswith("Warning") and "DICOMDIR" not in ln and not any(a in ln for a in allow)
    ]
    return errors, warnings
