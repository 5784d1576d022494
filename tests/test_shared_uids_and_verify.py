"""Issue 21, point 9: `--uid-secret FILE` lets several output folders give an image the same
UIDs; `send --verify` names a C-FIND the peer refused as refused, not as unreachable."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from orthanc import Orthanc
from testdata import DATA
from typer.testing import CliRunner

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.cli import app
from orthovision_cli.config import ConvertSettings
from orthovision_cli.errors import ExitCode
from orthovision_cli.send.options import SendOptions
from orthovision_cli.send.session import run_send

FACE = DATA / "photos/faces_london/rest/005_03.jpg"


def _uids(out: Path) -> set[str]:
    return {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
        for p in out.rglob("*.dcm")
        if ".orthovision" not in p.parts
    }


def _convert(tmp_path: Path, name: str, *extra: str) -> Path:
    out = tmp_path / name
    argv = [
        "convert",
        str(FACE),
        "-o",
        str(out),
        "-j",
        "1",
        "--on-uncertain",
        "convert",
        "--patient-id",
        "P1",
    ]
    res = CliRunner().invoke(app, [*argv, *extra])
    assert res.exit_code == ExitCode.OK, res.output
    return out


def test_a_shared_uid_secret_gives_the_same_uids_in_two_output_folders(tmp_path: Path) -> None:
    key = tmp_path / "practice.uid-secret"
    a = _convert(tmp_path, "a", "--uid-secret", str(key))
    b = _convert(tmp_path, "b", "--uid-secret", str(key))
    assert key.stat().st_mode & 0o777 == 0o600
    assert _uids(a) == _uids(b) and len(_uids(a)) == 1
    own = _convert(tmp_path, "c")  # the folder's own key: other UIDs
    assert _uids(own).isdisjoint(_uids(a))
    # A re-run with the same key converts nothing again; another key converts anew.
    again = CliRunner().invoke(
        app,
        [
            "convert",
            str(FACE),
            "-o",
            str(a),
            "--on-uncertain",
            "convert",
            "--patient-id",
            "P1",
            "--uid-secret",
            str(key),
        ],
    )
    assert again.exit_code == ExitCode.OK and "unchanged" in again.output
    short = tmp_path / "short.key"
    short.write_bytes(b"abc")
    res = CliRunner().invoke(
        app, ["convert", str(FACE), "-o", str(tmp_path / "d"), "--uid-secret", str(short)]
    )
    assert res.exit_code == ExitCode.USAGE and "fewer than 16 bytes" in res.output


@pytest.mark.external
def test_verify_names_a_refused_query_as_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    settings = ConvertSettings(inputs=[FACE], output=out, on_uncertain="convert", jobs=1)
    assert run_convert(settings).exit_code == ExitCode.OK
    # Our AE title is in no list and queries are not allowed to all: Orthanc aborts the C-FIND.
    strict = Orthanc(tmp_path / "orthanc", extra={"DicomAlwaysAllowFind": False}).start()
    try:
        summary = run_send(out, [strict.dest], SendOptions(verify=True, retries=0, timeout=10.0))
    finally:
        strict.stop()
    assert summary.exit_code == ExitCode.DESTINATION
    (line,) = summary.destination_errors.values()
    assert line.startswith("find-refused: C-FIND refused by the peer"), line
    assert "unreachable" not in line and "ORTHOVISION" in line
