"""`orthovision dicomdir`: a PS3.10 File-set that dciodvfy validates and DCMTK reads and updates."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from conftest import dciodvfy, require_tool
from make_inputs import make_all

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings
from orthovision_cli.errors import ExitCode
from orthovision_cli.send.ledger import Ledger
from orthovision_cli.send.scan import find_instances

pytestmark = pytest.mark.external


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("dicomdir")
    src, out = tmp / "inputs", tmp / "out"
    src.mkdir()
    kinds = make_all(src)
    manifest = tmp / "manifest.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "PatientID", "PatientName", "Modality", "BodyPart", "Protocol"])
        for i, k in enumerate(kinds):
            w.writerow(
                [
                    k.path.name,
                    f"PAT-{i % 2}",
                    "Müller^Zoë",
                    k.modality,
                    k.body_part,
                    "EV01" if k.modality == "XC" else "",
                ]
            )
    summary = run_convert(
        ConvertSettings(inputs=[src], output=out, manifest=manifest, use_models=False, jobs=2)
    )
    assert summary.exit_code == ExitCode.OK
    return out


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orthovision_cli", "dicomdir", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _originals(out: Path) -> dict[str, pydicom.Dataset]:
    found: dict[str, pydicom.Dataset] = {}
    for p in out.rglob("*.dcm"):
        ds = pydicom.dcmread(p)
        found[str(ds.SOPInstanceUID)] = ds
    return found


def test_fileset_valid_and_complete(out: Path, tmp_path: Path) -> None:
    media = tmp_path / "usb"
    proc = _run(str(out), "--to", str(media), "--fileset-id", "REFERRAL")
    assert proc.returncode == ExitCode.OK, proc.stderr
    originals = _originals(out)
    errors, _ = dciodvfy(media / "DICOMDIR")
    assert errors == []
    fs = pydicom.dcmread(media / "DICOMDIR")
    assert fs.FileSetID == "REFERRAL"
    records = fs.DirectoryRecordSequence
    images = [r for r in records if r.DirectoryRecordType == "IMAGE"]
    assert len(images) == len(originals)
    assert {r.DirectoryRecordType for r in records} == {"PATIENT", "STUDY", "SERIES", "IMAGE"}
    assert len([r for r in records if r.DirectoryRecordType == "PATIENT"]) == 2
    for rec in images:
        parts = list(rec.ReferencedFileID)
        assert all(re.fullmatch(r"[A-Z0-9_]{1,8}", p) for p in parts) and len(parts) <= 8
        copy = pydicom.dcmread(media.joinpath(*parts))
        uid = str(rec.ReferencedSOPInstanceUIDInFile)
        assert str(copy.SOPInstanceUID) == uid
        assert copy.PixelData == originals[uid].PixelData
        assert copy.file_meta.TransferSyntaxUID == rec.ReferencedTransferSyntaxUIDInFile
    # Every referenced instance is itself valid.
    for rec in images[:6]:
        errors, _ = dciodvfy(media.joinpath(*rec.ReferencedFileID), allow=("ViewCodeSequence",))
        assert errors == []


def test_dcmtk_reads_and_updates_it(out: Path, tmp_path: Path) -> None:
    dcmdump = require_tool("dcmdump")
    dcmmkdir = require_tool("dcmmkdir")
    media = tmp_path / "usb"
    assert _run(str(out), "--to", str(media)).returncode == ExitCode.OK
    dump = subprocess.run([dcmdump, str(media / "DICOMDIR")], capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0 and "E:" not in dump.stderr
    n_records = dump.stdout.count("DirectoryRecordType")
    # DCMTK's own media tool, USB/flash profile with JPEG, updating our DICOMDIR: it must parse
    # every record, accept every file and find nothing to add.
    upd = subprocess.run(
        [dcmmkdir, "-Pfl", "+U", "--recurse", *[p.name for p in media.iterdir() if p.is_dir()]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=media,
    )
    assert upd.returncode == 0, upd.stderr
    assert "E:" not in upd.stderr
    again = subprocess.run([dcmdump, str(media / "DICOMDIR")], capture_output=True, text=True, timeout=60)
    assert again.stdout.count("DirectoryRecordType") == n_records


def test_rerun_replaces_and_filters_patient(out: Path, tmp_path: Path) -> None:
    media = tmp_path / "usb"
    assert _run(str(out), "--to", str(media)).returncode == ExitCode.OK
    proc = _run(str(out), "--to", str(media), "--patient-id", "PAT-1")
    assert proc.returncode == ExitCode.OK
    fs = pydicom.dcmread(media / "DICOMDIR")
    pats = [r for r in fs.DirectoryRecordSequence if r.DirectoryRecordType == "PATIENT"]
    assert [p.PatientID for p in pats] == ["PAT-1"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".orthovision-media-")]
    (tmp_path / ".orthovision-media-killed").mkdir()  # what a killed run leaves
    assert _run(str(out), "--to", str(media)).returncode == ExitCode.OK
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".orthovision-media-")]
    assert _run(str(out), "--to", str(media), "--patient-id", "NOBODY").returncode == ExitCode.NOTHING_FOUND
    other = tmp_path / "notes"
    other.mkdir()
    (other / "x.txt").write_text("mine")
    assert _run(str(out), "--to", str(other)).returncode == ExitCode.USAGE  # never overwrite others' data


def test_send_skips_media_copies(out: Path) -> None:
    assert _run(str(out)).returncode == ExitCode.OK  # default: OUT/media
    assert (out / "media" / "DICOMDIR").is_file()
    with Ledger(out) as ledger:
        instances, bad = find_instances(out, ledger)
    assert not bad and len(instances) == len(_originals(out))  # the copies (same UIDs) left out
    assert not any(i.rel.startswith("media/") for i in instances)
