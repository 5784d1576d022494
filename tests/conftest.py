"""Shared fixtures: where the real test images are, and the external validators."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from orthanc import Orthanc

# A suite started in the background by a non-interactive shell inherits SIGINT ignored, and every
# process it starts would too: the tests that press Ctrl-C (review, dicomdir, convert) would fail
# or test nothing. Python's own handler back (an exec'd child then starts with the default).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

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


@pytest.fixture(scope="session")
def send_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the send tests send: the converter's own output for every input kind
    (tests/make_inputs.py, labels from a manifest, dental view codes on the photographs) plus the
    bundled sample_data classified by the embedded models. Converted once per session."""
    from make_inputs import make_all

    from orthovision_cli.batch.runner import run_convert
    from orthovision_cli.config import ConvertSettings
    from orthovision_cli.errors import ExitCode

    tmp = tmp_path_factory.mktemp("send")
    src = tmp / "inputs"
    out = tmp / "out"
    src.mkdir()
    kinds = make_all(src)
    manifest = tmp / "manifest.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "PatientID", "PatientName", "Modality", "BodyPart", "Protocol"])
        for k in kinds:
            view = "EV01" if k.modality == "XC" else ""
            w.writerow([k.path.name, "PAT-1", "Test^Patient", k.modality, k.body_part, view])
    summary = run_convert(
        ConvertSettings(inputs=[src], output=out, manifest=manifest, use_models=False, jobs=2)
    )
    assert summary.exit_code == ExitCode.OK, [r.as_dict() for r in summary.results if r.status != "converted"]
    # The bundled samples as a user converts them: labels from the embedded models.
    summary = run_convert(
        ConvertSettings(
            inputs=[SAMPLE], output=out, on_uncertain="convert", jobs=2, patient={"patient_id": "PAT-2"}
        )
    )
    assert summary.exit_code == ExitCode.OK, [r.as_dict() for r in summary.results if r.status != "converted"]
    return out


@pytest.fixture
def send_out(send_tree: Path, tmp_path: Path) -> Path:
    """A private copy of `send_tree` (each test has its own ledger)."""
    dst = tmp_path / "out"
    subprocess.run(["cp", "-a", str(send_tree), str(dst)], check=True)
    subprocess.run(["rm", "-f", *[str(p) for p in (dst / ".orthovision").glob("send*")]], check=True)
    return dst


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    """A real Orthanc for this test (tests/orthanc.py), stopped after it."""
    from orthanc import Orthanc

    o = Orthanc(tmp_path / "orthanc").start()
    try:
        yield o
    finally:
        o.stop()


@pytest.fixture
def converted_photos(tmp_path: Path) -> tuple[Path, Path]:
    """(input folder, output folder): four real photographs (the first of the London faces at
    rest) converted with `--no-models --modality XC --jobs 2`, the state a later run adds to."""
    from testdata import DATA

    from orthovision_cli.batch.runner import run_convert
    from orthovision_cli.config import ConvertSettings

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for p in sorted((DATA / "photos/faces_london/rest").glob("*.jpg"))[:4]:
        shutil.copy(p, src / p.name)
    settings = ConvertSettings(inputs=[src], output=out, use_models=False, labels={"modality": "XC"}, jobs=2)
    assert {str(r.status) for r in run_convert(settings).results} == {"converted"}
    return src, out
