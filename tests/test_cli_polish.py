"""What a new user meets first: a dry run that leaves nothing behind and points to no file it
did not write, `--json` with the report's own keys, and DICOM files in an input folder ignored
as already DICOM instead of failing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from testdata import DATA, orthovision, run_report

PHOTOS = sorted((DATA / "photos" / "faces_canada").glob("*.jpg"))[:2]
LABELS = ["--no-models", "--modality", "XC", "--body-part", "HEAD", "--patient-id", "P1"]


def _convert(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orthovision_cli", "convert", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _inbox(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    for p in PHOTOS:
        shutil.copy(p, src / p.name)
    return src


def test_a_dry_run_leaves_only_the_uid_secret_and_points_to_no_file(tmp_path: Path) -> None:
    src, out = _inbox(tmp_path), tmp_path / "out"
    proc = _convert(str(src), "-o", str(out), *LABELS, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    # The secret stays so that the names and UIDs shown are those a real run writes.
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert left == [".orthovision/uid-secret"], left
    assert "dry run: nothing written" in proc.stderr
    assert "orthovision-review.csv" not in proc.stderr and "report:" not in proc.stderr


def test_a_dry_run_on_an_existing_output_keeps_its_state(tmp_path: Path) -> None:
    src, out = _inbox(tmp_path), tmp_path / "out"
    assert _convert(str(src), "-o", str(out), *LABELS).returncode == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*") if ".orthovision" not in p.parts)
    assert (out / ".orthovision" / "uid-secret").exists()
    proc = _convert(str(src), "-o", str(out), *LABELS, "--dry-run", "--force")
    assert proc.returncode == 0, proc.stderr
    assert (out / ".orthovision" / "uid-secret").exists()  # the real state is never removed
    assert sorted(p.relative_to(out) for p in out.rglob("*") if ".orthovision" not in p.parts) == before


def test_json_has_the_reports_keys(tmp_path: Path) -> None:
    src, out = _inbox(tmp_path), tmp_path / "out"
    proc = _convert(str(src), "-o", str(out), *LABELS, "--json")
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    written = run_report(out)
    for key in ("tool", "exit_code", "fatal", "counts", "seconds", "warnings", "files"):
        assert key in printed, key
    # The file's own: its inputs needing attention, and where every input's line is.
    assert set(written) - {"files", "attention", "files_total", "files_jsonl"} <= set(printed)
    assert written["files_total"] == len(printed["files"]) and written["attention"] == []
    assert [f["rel"] for f in printed["files"]] == [f["rel"] for f in written["files"]]


def test_dicom_files_among_the_inputs_are_ignored_as_already_dicom(tmp_path: Path) -> None:
    src, first = _inbox(tmp_path), tmp_path / "first"
    assert _convert(str(src), "-o", str(first), *LABELS).returncode == 0
    mixed = tmp_path / "mixed"
    shutil.copytree(src, mixed)
    for i, dcm in enumerate(sorted(first.rglob("*.dcm"))):
        shutil.copy(dcm, mixed / f"old_{i}.dcm")
    out = tmp_path / "out"
    proc = _convert(str(mixed), "-o", str(out), *LABELS, "--json")
    assert proc.returncode == 0, proc.stderr  # nothing failed
    files = {f["rel"]: f for f in json.loads(proc.stdout)["files"]}
    old = [f for rel, f in files.items() if rel.startswith("old_")]
    assert len(old) == len(PHOTOS)
    assert all(f["status"] == "ignored" and f["reason"] == "already-dicom" for f in old), old
    assert "failed" not in proc.stderr


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return orthovision(*args)


def test_review_on_an_input_folder_says_what_to_do_instead_of_serving_nothing(tmp_path: Path) -> None:
    src = _inbox(tmp_path)
    proc = _run("review", str(src), "--no-browser")
    assert proc.returncode == 2, proc.stderr
    assert "is not the output folder of a conversion" in proc.stderr and "orthovision convert" in proc.stderr


def test_send_on_an_input_folder_writes_nothing_into_it(tmp_path: Path) -> None:
    src = _inbox(tmp_path)
    proc = _run("send", str(src), "--to", "dicom://ANY@127.0.0.1:9")
    assert proc.returncode == 2, proc.stderr
    assert "no DICOM file in" in proc.stderr
    assert not (src / ".orthovision").exists()


def test_a_refused_connection_is_named_as_refused(tmp_path: Path) -> None:
    import socket

    src, out = _inbox(tmp_path), tmp_path / "out"
    assert _convert(str(src), "-o", str(out), *LABELS).returncode == 0
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _run("send", str(out), "--to", f"dicom://PACS@127.0.0.1:{port}", "--retries", "0")
    assert proc.returncode == 6, proc.stderr
    assert "connection refused" in proc.stderr, proc.stderr


def test_the_classify_table_keeps_file_names_whole_at_80_columns(tmp_path: Path) -> None:
    import os

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(PHOTOS[0], src / "sample_NikonD90_long.jpg")
    env = {**os.environ, "COLUMNS": "80"}
    proc = orthovision("classify", str(src), timeout=300, env=env)
    assert proc.returncode in (0, 4), proc.stderr
    assert "sample_NikonD90_long.jpg" in proc.stdout, proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80
