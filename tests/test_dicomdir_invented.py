"""Issue 21, point 4: `orthovision dicomdir` writes a File-set for what the documented flows
write: the bundled sample data (no Patient ID) and an output dated by a manifest (no Study
Time). The missing Type 1 record keys are invented deterministically and listed, as DCMTK's
`dcmmkdir +I` does; DCMTK reads the DICOMDIR and dciodvfy finds no error."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from conftest import dciodvfy, require_tool
from testdata import DATA

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings
from orthovision_cli.errors import ExitCode

pytestmark = pytest.mark.external
SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def _dicomdir(out: Path, media: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orthovision_cli", "dicomdir", str(out), "--to", str(media)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _check(media: Path) -> str:
    dump = subprocess.run(
        [require_tool("dcmdump"), str(media / "DICOMDIR")], capture_output=True, text=True, timeout=60
    )
    assert dump.returncode == 0, dump.stderr
    errors, warnings = dciodvfy(media / "DICOMDIR")
    assert errors == [] and warnings == [], errors + warnings
    return dump.stdout


def _records(media: Path) -> list[tuple[str, ...]]:
    ds = pydicom.dcmread(media / "DICOMDIR")
    keys = ("DirectoryRecordType", "PatientID", "StudyDate", "StudyTime", "StudyID")
    return [tuple(str(r.get(k, "")) for k in keys) for r in ds.DirectoryRecordSequence]


def test_dicomdir_of_the_sample_output_invents_patient_ids(tmp_path: Path) -> None:
    out = tmp_path / "out"
    settings = ConvertSettings(inputs=[SAMPLE], output=out, on_uncertain="convert", jobs=1)
    assert run_convert(settings).exit_code == ExitCode.OK
    assert all(not pydicom.dcmread(p, stop_before_pixels=True).PatientID for p in out.rglob("*.dcm"))
    proc = _dicomdir(out, tmp_path / "media")
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert "add_custom" not in proc.stderr and "record creation function" not in proc.stderr
    invented = re.findall(r"invented for the DICOMDIR records: PatientID (NOID[0-9A-F]{8})", proc.stderr)
    assert invented, proc.stderr
    dump = _check(tmp_path / "media")
    assert all(pid in dump for pid in invented)
    first = _records(tmp_path / "media")
    patients = {r[1] for r in first if r[0] == "PATIENT"}
    assert patients == set(invented)
    # The instances on the media are copies as they are: no invented ID inside them.
    copies = [p for p in (tmp_path / "media").rglob("*") if p.is_file() and p.name != "DICOMDIR"]
    assert copies and all(not pydicom.dcmread(p, stop_before_pixels=True).PatientID for p in copies)
    # Deterministic: the same output gives the same records.
    again = _dicomdir(out, tmp_path / "media2")
    assert again.returncode == ExitCode.OK and _records(tmp_path / "media2") == first


def test_dicomdir_of_a_manifest_dated_output_invents_the_study_time(tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    photo = DATA / "photos/faces_london/rest/005_03.jpg"
    (inbox / photo.name).write_bytes(photo.read_bytes())
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,PatientID,StudyDate\n{photo.name},1004,20250312\n")
    out = tmp_path / "out"
    settings = ConvertSettings(inputs=[inbox], output=out, manifest=manifest, on_uncertain="convert", jobs=1)
    assert run_convert(settings).exit_code == ExitCode.OK
    proc = _dicomdir(out, tmp_path / "media")
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert "StudyTime 000000" in proc.stderr
    _check(tmp_path / "media")
    study = [r for r in _records(tmp_path / "media") if r[0] == "STUDY"]
    assert study and study[0][2:4] == ("20250312", "000000")
    assert [r[1] for r in _records(tmp_path / "media") if r[0] == "PATIENT"] == ["1004"]
