"""Issue 25: the one-pass DICOMDIR. Every record's offsets point at records (the tree walked from
the root by its offsets reaches every record once, each at the level below its parent), every
IMAGE record references a copy that exists and is the instance it names, and the peers agree:
pydicom's FileSet loads it, DCMTK's dcmdump finds a record at each offset, dcmftest sees a
PS3.10 file, dciodvfy finds nothing to say. Instances of several patients, studies and series
arrive interleaved; a duplicate copy, a file without a SOP Instance UID, and a patient without a
Patient ID are in the input."""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from conftest import dciodvfy, require_tool
from pydicom.dataset import Dataset
from pydicom.fileset import DIRECTORY_RECORDERS, FileSet
from pydicom.uid import generate_uid
from testdata import DATA, orthovision

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings
from orthovision_cli.errors import ExitCode
from orthovision_cli.send import media_headers
from orthovision_cli.send.media import component, write_fileset
from orthovision_cli.send.media_records import encode_record, image_record
from orthovision_cli.send.scan import find_files

pytestmark = pytest.mark.external

LEVEL_BELOW = {"PATIENT": "STUDY", "STUDY": "SERIES", "SERIES": "IMAGE"}


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One instance written by the converter from a real photograph."""
    tmp = tmp_path_factory.mktemp("seed")
    (tmp / "in").mkdir()
    shutil.copy(DATA / "photos/faces_london/rest/005_03.jpg", tmp / "in")
    settings = ConvertSettings(inputs=[tmp / "in"], output=tmp / "out", use_models=False, jobs=1)
    assert run_convert(settings).exit_code == ExitCode.OK
    return next((tmp / "out").rglob("*.dcm"))


def _layout() -> list[tuple[str, int]]:
    """(Patient ID, study of the patient) of the 42 instances, in file order: A, B, A, nobody."""
    out = []
    for i in range(42):
        patient = ("A", "B", "A", "")[i % 4]
        out.append((patient, (i // 4) % 2 if patient == "A" else 0))
    return out


@pytest.fixture(scope="module")
def tree(seed: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """An output folder of 43 instances (3 patients interleaved, one without a Patient ID; 2
    studies of patient A; series of up to 4) plus a duplicate copy and a broken file; and the
    Patient ID (or "") of each SOP Instance UID that belongs in the File-set."""
    out = tmp_path_factory.mktemp("tree")
    base = pydicom.dcmread(seed)
    studies = {("A", 0): generate_uid(), ("A", 1): generate_uid(), ("B", 0): generate_uid()}
    studies[("", 0)] = generate_uid()
    series: dict[tuple[str, int, int], str] = {}
    expected: dict[str, str] = {}
    for i, (patient, study) in enumerate(_layout()):
        key = (patient, study, i // 12)
        series.setdefault(key, generate_uid())
        ds = base.copy()
        ds.PatientID = patient
        ds.PatientName = f"Test^{patient}" if patient else ""
        ds.StudyInstanceUID = studies[(patient, study)]
        ds.SeriesInstanceUID = series[key]
        ds.SeriesNumber = key[2] + 1
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        if i == 5:
            del ds.InstanceNumber  # invented in the record
        ds.save_as(out / f"i{i:03d}.dcm", enforce_file_format=True)
        expected[str(ds.SOPInstanceUID)] = patient
    shutil.copy(out / "i007.dcm", out / "i007-copy.dcm")  # a second file of one instance
    broken = base.copy()
    del broken.SOPInstanceUID
    broken.save_as(out / "nouid.dcm")
    return out, expected


def _walk(ds: Dataset) -> list[Dataset]:
    """The records reached from the root by their offsets, each checked to be at the level
    below its parent; raises AssertionError on an offset that points at no record or a loop."""
    at = {int(r.seq_item_tell): r for r in ds.DirectoryRecordSequence}
    seen: list[Dataset] = []

    def chain(offset: int, record_type: str | None) -> int:
        last = 0
        while offset:
            assert offset in at, f"offset {offset} points at no record"
            rec = at[offset]
            assert all(rec is not s for s in seen), f"record at {offset} reached twice"
            if record_type is not None:
                assert rec.DirectoryRecordType == record_type
            assert rec.RecordInUseFlag == 0xFFFF
            seen.append(rec)
            lower = int(rec.OffsetOfReferencedLowerLevelDirectoryEntity)
            below = LEVEL_BELOW.get(str(rec.DirectoryRecordType))
            assert bool(lower) == (below is not None), f"{rec.DirectoryRecordType} at {offset}"
            chain(lower, below)
            last, offset = offset, int(rec.OffsetOfTheNextDirectoryRecord)
        return last

    last = chain(int(ds.OffsetOfTheFirstDirectoryRecordOfTheRootDirectoryEntity), "PATIENT")
    assert last == int(ds.OffsetOfTheLastDirectoryRecordOfTheRootDirectoryEntity)
    assert len(seen) == len(ds.DirectoryRecordSequence)  # every record reached, once
    return seen


def test_offsets_walk_to_every_record_and_each_file_is_the_instance(
    tree: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    out, expected = tree
    media = tmp_path / "usb"
    proc = orthovision("dicomdir", str(out), "--to", str(media), "--fileset-id", "TEST 25")
    assert proc.returncode == ExitCode.SOME_FAILED, proc.stderr
    assert re.search(r"failed: nouid\.dcm: left out of the File-set: no SOP Instance UID", proc.stderr)
    assert "InstanceNumber 1 (no Instance Number)" in proc.stderr
    assert "42 instance(s), 4 study(ies), 3 patient(s)" in proc.stderr
    ds = pydicom.dcmread(media / "DICOMDIR")
    assert ds.FileSetID == "TEST 25" and ds.FileSetConsistencyFlag == 0
    records = _walk(ds)
    images = [r for r in records if r.DirectoryRecordType == "IMAGE"]
    assert sorted(str(r.ReferencedSOPInstanceUIDInFile) for r in images) == sorted(expected)
    patient_of: dict[str, str] = {}
    current = ""
    for rec in records:  # depth first: each IMAGE follows its PATIENT
        if rec.DirectoryRecordType == "PATIENT":
            current = str(rec.PatientID)
        if rec.DirectoryRecordType == "IMAGE":
            patient_of[str(rec.ReferencedSOPInstanceUIDInFile)] = current
    for uid, patient in expected.items():
        assert patient_of[uid] == patient or (not patient and patient_of[uid].startswith("NOID"))
    for rec in images:
        parts = list(rec.ReferencedFileID)
        assert len(parts) == 4 and all(re.fullmatch(r"(PT|ST|SE|IM)[0-9]{6}", p) for p in parts)
        copy = pydicom.dcmread(media.joinpath(*parts), stop_before_pixels=True)
        assert str(copy.SOPInstanceUID) == str(rec.ReferencedSOPInstanceUIDInFile)
        assert str(copy.SOPClassUID) == str(rec.ReferencedSOPClassUIDInFile)
        assert str(copy.file_meta.TransferSyntaxUID) == str(rec.ReferencedTransferSyntaxUIDInFile)
        assert int(rec.InstanceNumber) == int(copy.get("InstanceNumber", 1))
    # Patient A's instances came interleaved with others: all under its one PATIENT folder.
    a_folders = {
        str(r.ReferencedFileID[0]) for r in images if patient_of[str(r.ReferencedSOPInstanceUIDInFile)] == "A"
    }
    assert a_folders == {"PT000000"}
    # Nothing but the File-set in the folder: the DICOMDIR and one file per IMAGE record.
    files = [p for p in media.rglob("*") if p.is_file()]
    assert len(files) == len(images) + 1

    # pydicom's own reader loads it (orphans raise) and finds every instance.
    fs = FileSet(ds)
    assert len(fs) == len(expected)
    for uid in expected:
        (found,) = fs.find(SOPInstanceUID=uid)
        assert str(found.load().SOPInstanceUID) == uid

    # DCMTK: a PS3.10 file; each record's offset, as dcmdump computes it, and every offset
    # value in the records and the header, is one of them.
    assert subprocess.run(
        [require_tool("dcmftest"), str(media / "DICOMDIR")], capture_output=True, text=True
    ).stdout.startswith("yes")
    dump = subprocess.run(
        [require_tool("dcmdump"), str(media / "DICOMDIR")], capture_output=True, text=True, timeout=60
    )
    assert dump.returncode == 0 and "E:" not in dump.stderr
    at = {int(n) for n in re.findall(r"offset=\$(\d+)", dump.stdout)}
    assert len(at) == len(records)
    pointers = re.findall(r"\((0004,1200|0004,1202|0004,1400|0004,1420)\) up (\d+)", dump.stdout)
    assert pointers and all(int(v) in at for _, v in pointers if int(v))
    errors, warnings = dciodvfy(media / "DICOMDIR")
    assert errors == [] and warnings == [], errors + warnings


def test_image_record_is_what_pydicom_encodes(seed: Path) -> None:
    """The IMAGE record, encoded directly for speed, is byte for byte pydicom's encoding of the
    record that pydicom's own IMAGE definition makes."""
    ds = pydicom.dcmread(seed, stop_before_pixels=True)
    for number, charset in ((7, "ISO_IR 192"), (12345, ["ISO 2022 IR 6", "ISO 2022 IR 87"]), (3, None)):
        ds.InstanceNumber = number
        if charset is None:
            del ds.SpecificCharacterSet
        else:
            ds.SpecificCharacterSet = charset
        file_id = ["PT000000", "ST000001", "SE000002", "IM999999"]
        rec = DIRECTORY_RECORDERS["IMAGE"](ds)
        rec.DirectoryRecordType = "IMAGE"
        rec.ReferencedFileID = file_id
        rec.ReferencedSOPClassUIDInFile = ds.SOPClassUID
        rec.ReferencedSOPInstanceUIDInFile = ds.SOPInstanceUID
        rec.ReferencedTransferSyntaxUIDInFile = ds.file_meta.TransferSyntaxUID
        joined = "" if charset is None else charset if isinstance(charset, str) else "\\".join(charset)
        if charset is not None:
            rec.SpecificCharacterSet = charset
        ours = image_record(
            file_id,
            str(ds.SOPClassUID),
            str(ds.SOPInstanceUID),
            str(ds.file_meta.TransferSyntaxUID),
            joined,
            str(number),
        )
        assert bytes(ours) == bytes(encode_record(rec))


def test_file_id_components_stay_8_characters_and_distinct() -> None:
    assert component(0, 0) == "PT000000" and component(3, 999_999) == "IM999999"
    names = {component(3, n) for n in range(999_990, 1_000_500)}
    assert len(names) == 510 and all(re.fullmatch(r"IM[0-9A-Z]{6}", n) for n in names)
    assert component(3, 1_000_000) == "IMZ00000"


def test_headers_read_in_worker_processes_give_the_same_fileset(
    tree: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many instances: their headers are read in worker processes, in order; the File-set is the
    one a single process writes (the same records, File IDs and skipped lines)."""
    out, expected = tree
    files = find_files(out)

    def records(folder: Path) -> list[tuple[str, ...]]:
        ds = pydicom.dcmread(folder / "DICOMDIR")
        keys = ["DirectoryRecordType", "PatientID", "StudyInstanceUID", "SeriesInstanceUID"]
        keys += ["ReferencedFileID", "ReferencedSOPInstanceUIDInFile", "InstanceNumber"]
        return [tuple(str(r.get(k, "")) for k in keys) for r in ds.DirectoryRecordSequence]

    monkeypatch.setattr(media_headers, "PARALLEL_FROM", 10**9)
    alone = write_fileset(files, tmp_path / "alone")
    monkeypatch.setattr(media_headers, "PARALLEL_FROM", 0)
    monkeypatch.setattr(media_headers, "readers", lambda: 2)
    pools: list[object] = []
    get_context = multiprocessing.get_context

    def spied(method: str) -> object:
        ctx = get_context(method)
        pools.append(ctx)
        return ctx

    monkeypatch.setattr(media_headers.multiprocessing, "get_context", spied)
    shared = write_fileset(files, tmp_path / "shared")
    assert pools  # the worker processes were used
    assert shared.added == alone.added == len(expected) and shared.skipped == alone.skipped
    assert shared.invented == alone.invented
    assert records(tmp_path / "shared") == records(tmp_path / "alone")


def _ignores_sigint(pid: int) -> bool:
    """Whether process `pid` ignores SIGINT now (its SigIgn mask in /proc)."""
    found = re.search(r"^SigIgn:\s*([0-9a-f]+)", Path(f"/proc/{pid}/status").read_text(), re.M)
    return found is not None and bool(int(found.group(1), 16) & (1 << (signal.SIGINT - 1)))


def test_ctrl_c_leaves_the_earlier_fileset_and_no_traceback(seed: Path, tmp_path: Path) -> None:
    """Ctrl-C to the whole process group while the headers are read in worker processes (2,000
    instances): exit 130, one line, no traceback from any process, no temporary folder, the
    earlier File-set kept."""
    out = tmp_path / "out"
    out.mkdir()
    ds = pydicom.dcmread(seed)
    for i in range(2000):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(out / f"i{i:04d}.dcm", enforce_file_format=True)
    media = tmp_path / "usb"
    assert orthovision("dicomdir", str(out), "--to", str(media)).returncode == ExitCode.OK
    before = (media / "DICOMDIR").read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orthovision_cli", "dicomdir", str(out), "--to", str(media)],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: Ctrl-C reaches all of it, as in a terminal
    )
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    deadline = time.monotonic() + 60
    # Reading has begun in worker processes and the pool is made: the main process takes Ctrl-C
    # again (SIGINT out of its ignored set). Not a fixed wait: on a fast day the 2,000 headers
    # are read in well under a second, and a run that ended first would fail this test.
    while len(children.read_text().split()) < 2 or _ignores_sigint(proc.pid):
        assert proc.poll() is None and time.monotonic() < deadline, "dicomdir ended before Ctrl-C"
        time.sleep(0.001)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err and "interrupted" in err
    assert not list(tmp_path.glob(".orthovision-media-*"))
    assert (media / "DICOMDIR").read_bytes() == before


def test_a_file_gone_before_its_copy_is_taken_out_again(
    tree: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files deleted between their header's reading and their copy: each is one line, its IMAGE
    record is taken out again, and so is a SERIES left empty (patient B's first series here);
    the File-set is still whole and no name is used twice."""
    out, expected = tree
    work = tmp_path / "out"
    shutil.copytree(out, work)
    gone = {"i000.dcm", "i001.dcm", "i005.dcm", "i009.dcm"}
    read = media_headers.read_header

    def read_then_delete(path: Path) -> media_headers.Header | str:
        header = read(path)
        if path.name in gone:
            path.unlink()
        return header

    monkeypatch.setattr(media_headers, "PARALLEL_FROM", 10**9)  # in this process: patched
    monkeypatch.setattr(media_headers, "read_header", read_then_delete)
    summary = write_fileset(find_files(work), tmp_path / "usb")
    assert summary.added == len(expected) - len(gone)
    assert sorted(line.split(":")[0] for line in summary.skipped) == sorted([*gone, "nouid.dcm"])
    ds = pydicom.dcmread(tmp_path / "usb" / "DICOMDIR")
    records = _walk(ds)
    b_series = [r for r in records if r.DirectoryRecordType == "SERIES"]
    assert len(b_series) == len({(p, s, i // 12) for i, (p, s) in enumerate(_layout())}) - 1
    ids = [tuple(r.ReferencedFileID) for r in records if r.DirectoryRecordType == "IMAGE"]
    assert len(ids) == len(set(ids)) == summary.added
    assert all(tmp_path.joinpath("usb", *i).is_file() for i in ids)
    assert len(FileSet(ds)) == summary.added
    assert dciodvfy(tmp_path / "usb" / "DICOMDIR")[0] == []
