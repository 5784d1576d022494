"""`convert --confirm` asks a person once, not per file (issue 20), through a real
pseudo-terminal (pexpect): a folder of 30 scanned cephalograms whose files do not say film or
digital asks "films or digital?" once and "same for the next 29 files?" once; all 30 are written
as RG with the subject data typed, which later runs (`--force` too) keep (issue 21, point 3)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pexpect
import pydicom
import pytest
from conftest import REPO, dciodvfy
from test_batch_facts import variant
from typer.testing import CliRunner

from orthovision_cli.answers import load as load_answers
from orthovision_cli.cli import app

pytestmark = pytest.mark.slow
FILMS = 30


def _spawn(*args: str) -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable,
        ["-m", "orthovision_cli", "convert", *args, "-j", "1", "--no-fsync", "--confirm"],
        encoding="utf-8",
        timeout=120,
        dimensions=(50, 400),  # no line of a prompt wrapped
    )


def _dicoms(out: Path) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(out.rglob("*.dcm"))]


@pytest.mark.external
def test_thirty_films_one_question_each(tmp_path: Path) -> None:
    films, out = tmp_path / "films", tmp_path / "out"
    films.mkdir()
    for i in range(FILMS):
        variant(REPO / "tests" / "data" / "classify" / "ceph_lateral.jpg", films / f"ceph_{i:02d}.jpg", i)
    child = _spawn(str(films), "-o", str(out))
    try:
        child.expect(r"Are the radiographs in \S*films scanned films or digital\?")
        child.sendline("f")
        child.expect(r"every radiograph in \S* is film")
        child.expect("Subject ID")
        child.sendline("S001")
        child.expect("Acquisition date")
        child.sendline("2001-05-06")
        child.expect("Age")
        child.sendline("12")
        child.expect("RG")  # the proposal shown is the fact's
        child.expect("Enter accepts")
        child.sendline("")
        child.expect(rf"Same for the next {FILMS - 1} file\(s\) of \S*films")
        child.expect("y: yes")
        child.sendline("y")
        child.expect(pexpect.EOF)
        transcript = child.before or ""
    finally:
        child.close()
    assert child.exitstatus == 0, transcript
    # Nothing else was asked after "y".
    for question in ("Are the radiographs", "Subject ID", "Enter accepts", "Same for the next"):
        assert question not in transcript, question
    written = _dicoms(out)
    assert len(written) == FILMS
    assert {(ds.Modality, ds.PatientID, ds.StudyDate, ds.PatientAge) for ds in written} == {
        ("RG", "S001", "20010506", "012Y")
    }
    for path in sorted(out.rglob("*.dcm"))[:3]:
        assert dciodvfy(path)[0] == []
    answers = load_answers(out)
    assert [a.acquisition for a in answers.values()] == ["film"] and str(films) in answers
    with (out / "orthovision-decisions.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == FILMS and {(r["modality"], r["patient_id"], r["age"]) for r in rows} == {
        ("RG", "S001", "012Y")
    }
    # A later run, --force and no --confirm: the person's labels and subject data stand.
    result = CliRunner().invoke(app, ["convert", str(films), "-o", str(out), "-j", "1", "--force", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["counts"].get("converted") == FILMS
    again = _dicoms(out)
    assert {(ds.Modality, ds.PatientID, ds.StudyDate, ds.PatientAge) for ds in again} == {
        ("RG", "S001", "20010506", "012Y")
    }
    assert not any(p.parts[-3].startswith("NOID") for p in out.rglob("*.dcm"))


def test_an_answer_skipped_is_asked_again_next_run(tmp_path: Path) -> None:
    films, out = tmp_path / "films", tmp_path / "out"
    films.mkdir()
    for i in range(2):
        variant(REPO / "tests" / "data" / "classify" / "ceph_lateral.jpg", films / f"c{i}.jpg", i)
    child = _spawn(str(films), "-o", str(out), "--patient-id", "P9", "--study-date", "2020-01-01")
    try:
        child.expect("Are the radiographs in")
        child.sendline("s")  # not known here: the modality stays a per-file question
        child.expect("Age")
        child.sendline("9")
        child.expect("DX")
        child.expect("Enter accepts")
        child.sendline("s")  # left for review
        child.expect("Age")  # the second file: not asked film or digital again in this run
        child.sendline("")
        child.expect("Enter accepts")
        child.sendline("q")
        child.expect(pexpect.EOF)
        transcript = child.before or ""
    finally:
        child.close()
    assert "Are the radiographs in" not in transcript
    assert load_answers(out) == {}
    assert not list(out.rglob("*.dcm"))
