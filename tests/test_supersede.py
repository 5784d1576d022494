"""Issue 21, point 1: a re-run that changes an input's plan supersedes its earlier instances. The
output tree then holds each image once, the state and the report say what was replaced and by
what, and `send` never sends a superseded instance: it says per destination where one was
delivered already, and `--reject-superseded` sends a real Orthanc an IOCM rejection note."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pydicom
import pytest
from conftest import dciodvfy
from orthanc import Orthanc
from testdata import DATA, run_report

from orthovision_cli.batch.runner import RunSummary, run_convert
from orthovision_cli.batch.supersede import read_superseded
from orthovision_cli.config import ConvertSettings
from orthovision_cli.errors import ExitCode
from orthovision_cli.send.options import SendOptions
from orthovision_cli.send.session import run_send

PHOTOS = [DATA / "photos/faces_london/rest/005_03.jpg", DATA / "photos/faces_canada/003f.jpg"]
KOS = "1.2.840.10008.5.1.4.1.1.88.59"


def _inbox(tmp_path: Path) -> Path:
    inbox = tmp_path / "in"
    inbox.mkdir()
    for p in PHOTOS:
        (inbox / p.name).write_bytes(p.read_bytes())
    return inbox


def _manifest(tmp_path: Path, first_date: str) -> Path:
    m = tmp_path / "patients.csv"
    m.write_text(
        f"path,PatientID,StudyDate\n{PHOTOS[0].name},1004,{first_date}\n{PHOTOS[1].name},1004,20250312\n"
    )
    return m


def _convert(inbox: Path, out: Path, manifest: Path, force: bool = False) -> RunSummary:
    settings = ConvertSettings(
        inputs=[inbox], output=out, manifest=manifest, jobs=1, on_uncertain="convert", force=force
    )
    summary = run_convert(settings)
    assert summary.exit_code == ExitCode.OK, [r.as_dict() for r in summary.results]
    return summary


def _tree(out: Path) -> dict[str, str]:
    """SOP Instance UID -> file, of the instances in the output tree (the state folder aside)."""
    found = {}
    for p in sorted(out.rglob("*.dcm")):
        if ".orthovision" not in p.relative_to(out).parts:
            found[str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)] = p.relative_to(
                out
            ).as_posix()
    return found


def test_a_changed_manifest_supersedes_the_earlier_instance(tmp_path: Path) -> None:
    inbox, out = _inbox(tmp_path), tmp_path / "out"
    _convert(inbox, out, _manifest(tmp_path, "20250312"))
    first = _tree(out)
    assert len(first) == 2 and all(f.startswith("1004/20250312-") for f in first.values())
    # The same plan again (--force): the same instances, rewritten in place; nothing superseded.
    again = _convert(inbox, out, _manifest(tmp_path, "20250312"), force=True)
    assert _tree(out) == first and again.superseded == 0
    assert not (out / ".orthovision" / "superseded").exists()

    _convert(inbox, out, _manifest(tmp_path, "20250313"))
    now = _tree(out)
    assert len(now) == 2, now  # each image once, not the old file beside the new one
    (old_uid,) = set(first) - set(now)
    (new_uid,) = set(now) - set(first)
    assert now[new_uid].startswith("1004/20250313-")
    assert not (out / first[old_uid]).exists()
    report = run_report(out)
    assert report["superseded"] == 1
    (row,) = [f for f in report["files"] if f.get("superseded")]
    (sup,) = row["superseded"]
    assert sup["file"] == first[old_uid] and sup["sop_instance_uid"] == old_uid
    assert sup["replaced_by"] == [{"file": now[new_uid], "sop_instance_uid": new_uid}]
    kept = out / sup["kept"]
    assert kept.is_file() and kept.parts[-len(Path(first[old_uid]).parts) - 3] == ".orthovision"
    assert str(pydicom.dcmread(kept, stop_before_pixels=True).SOPInstanceUID) == old_uid
    (rec,) = read_superseded(out)
    assert (rec.sop_uid, rec.rel, rec.replaced_by[0]["sop_instance_uid"]) == (
        old_uid,
        first[old_uid],
        new_uid,
    )

    # The manifest changed back: the first instance is current again, the second superseded.
    _convert(inbox, out, _manifest(tmp_path, "20250312"))
    assert _tree(out) == first
    assert [r.sop_uid for r in read_superseded(out)] == [new_uid]


def test_an_input_that_now_waits_for_review_keeps_its_earlier_instance(tmp_path: Path) -> None:
    """Not replaced yet: the earlier file stays, and its row still names it, so that the
    conversion that does replace it (once a person decided) supersedes it."""
    chest = DATA / "radiographs/chest/19073f37.png"
    inbox, out = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    (inbox / chest.name).write_bytes(chest.read_bytes())
    first = run_convert(ConvertSettings(inputs=[inbox], output=out, jobs=1, on_uncertain="convert"))
    assert first.exit_code == ExitCode.OK
    files = _tree(out)
    review = run_convert(ConvertSettings(inputs=[inbox], output=out, jobs=1, force=True))
    assert review.exit_code == ExitCode.SOME_FAILED and review.counts == {"review": 1}
    assert _tree(out) == files
    with sqlite3.connect(out / ".orthovision" / "state.sqlite") as db:
        (outputs,) = db.execute("SELECT outputs FROM inputs").fetchone()
    assert json.loads(outputs) == list(files.values())
    # A person says DX: converted anew with another plan, the earlier instance superseded.
    final = run_convert(ConvertSettings(inputs=[inbox], output=out, jobs=1, labels={"modality": "DX"}))
    assert final.exit_code == ExitCode.OK and final.superseded == 1
    assert len(_tree(out)) == 1 and set(_tree(out)) != set(files)


def test_a_copy_converted_in_its_own_right_supersedes_none_of_its_originals_instances(
    tmp_path: Path,
) -> None:
    """A copy of converted content in another folder is a `duplicate`: its row names its
    original's files. Other settings convert the copy in its own right (another folder: another
    study); the original's instances are still the original's, current: none is superseded."""
    inbox, out, copy = _inbox(tmp_path), tmp_path / "out", tmp_path / "copy"
    copy.mkdir()
    for p in inbox.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())

    def convert(folder: Path, radiographs: str | None = None) -> RunSummary:
        settings = ConvertSettings(
            inputs=[folder], output=out, jobs=1, on_uncertain="convert", radiographs=radiographs
        )
        summary = run_convert(settings)
        assert summary.exit_code == ExitCode.OK, [r.as_dict() for r in summary.results]
        return summary

    convert(inbox)
    first = _tree(out)
    assert convert(copy).counts == {"unchanged": 2} and _tree(out) == first
    again = convert(copy, radiographs="digital")
    assert again.counts == {"converted": 2} and again.superseded == 0, read_superseded(out)
    assert read_superseded(out) == [] and not (out / ".orthovision" / "superseded").exists()
    now = _tree(out)
    assert len(now) == 4 and {u: now[u] for u in first} == first  # where they were
    # The original's rows stand as they were: a re-run of its folder has nothing to do.
    assert convert(inbox).counts == {"unchanged": 2} and _tree(out) == now


@pytest.mark.external
def test_send_never_sends_a_superseded_instance_and_rejects_a_delivered_one(
    tmp_path: Path, orthanc: Orthanc
) -> None:
    inbox, out = _inbox(tmp_path), tmp_path / "out"
    opts = SendOptions(retries=1, timeout=10.0)
    # Changed before it was sent: the PACS gets exactly one instance per image.
    _convert(inbox, out, _manifest(tmp_path, "20250312"))
    first = _tree(out)
    _convert(inbox, out, _manifest(tmp_path, "20250313"))
    now = _tree(out)
    summary = run_send(out, [orthanc.dest], opts)
    assert summary.exit_code == ExitCode.OK, summary.as_dict()
    assert sorted(orthanc.sop_uids()) == sorted(now)
    (old_uid,) = set(first) - set(now)
    (sup,) = [r for r in summary.results if r.status == "superseded"]
    assert (sup.sop_uid, sup.reason) == (old_uid, "not-sent") and "replaced by 1004/20250313-" in sup.message

    # Delivered, then superseded: said per destination; a rejection note on request.
    _convert(inbox, out, _manifest(tmp_path, "20250314"))
    latest = _tree(out)
    (gone_uid,) = set(now) - set(latest)
    told = run_send(out, [orthanc.dest], opts)
    delivered = {r.sop_uid: r.reason for r in told.results if r.status == "superseded"}
    assert delivered == {old_uid: "not-sent", gone_uid: "delivered"}
    assert len(orthanc.sop_uids()) == 3  # the PACS holds the superseded one beside its replacement
    rejected = run_send(out, [orthanc.dest], SendOptions(retries=1, timeout=10.0, reject_superseded=True))
    assert rejected.exit_code == ExitCode.OK, rejected.as_dict()
    (note,) = [r for r in rejected.results if r.status == "stored"]
    assert {r.sop_uid: r.reason for r in rejected.results if r.status == "superseded"} == {
        old_uid: "not-sent",
        gone_uid: "rejected",
    }
    # The note in Orthanc: a KOS in the superseded instance's study, naming it.
    held = {orthanc.get(f"/instances/{i}/simplified-tags")["SOPInstanceUID"]: i for i in orthanc.instances()}
    kos = pydicom.dcmread(out / note.rel)
    assert note.sop_uid in held and str(kos.SOPClassUID) == KOS and kos.Modality == "KO"
    title = kos.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator) == ("113037", "DCM")
    assert title.CodeMeaning == "Rejected for Patient Safety Reasons"
    refs = [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in kos.ContentSequence]
    assert refs == [gone_uid]
    old_study = orthanc.get(f"/instances/{held[gone_uid]}/simplified-tags")["StudyInstanceUID"]
    assert str(kos.StudyInstanceUID) == old_study
    errors, warnings = dciodvfy(out / note.rel)
    assert errors == [] and warnings == [], errors + warnings
    # A re-run sends no second note: the ledger knows.
    last = run_send(out, [orthanc.dest], SendOptions(retries=1, timeout=10.0, reject_superseded=True))
    assert not [r for r in last.results if r.status == "stored"]
    assert {r.sop_uid: r.reason for r in last.results if r.status == "superseded"}[gone_uid] == "rejected"


@pytest.mark.external
def test_convert_send_reports_a_delivered_instance_it_superseded(tmp_path: Path, orthanc: Orthanc) -> None:
    from typer.testing import CliRunner

    from orthovision_cli.cli import app

    inbox, out = _inbox(tmp_path), tmp_path / "out"
    argv = ["convert", str(inbox), "-o", str(out), "-j", "1", "--on-uncertain", "convert"]
    argv += ["--send", orthanc.dest, "--json"]
    first = CliRunner().invoke(app, [*argv, "--manifest", str(_manifest(tmp_path, "20250312"))])
    assert first.exit_code == ExitCode.OK, first.output
    before = _tree(out)
    second = CliRunner().invoke(app, [*argv, "--manifest", str(_manifest(tmp_path, "20250313"))])
    assert second.exit_code == ExitCode.OK, second.output
    sent = json.loads(second.stdout)["send"]["results"]
    (old_uid,) = set(before) - set(_tree(out))
    flagged = [r for r in sent if r["status"] == "superseded"]
    assert [(r["sop_instance_uid"], r["reason"]) for r in flagged] == [(old_uid, "delivered")]
    assert old_uid not in [r["sop_instance_uid"] for r in sent if r["status"] == "stored"]
