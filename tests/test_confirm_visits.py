"""`convert --confirm` asks the subject data once per visit, not per file (issue 26), through a
real pseudo-terminal: a camera card with a patient card before the first visit and none before
the second; the card's visit is not asked its ID, the second visit is asked once, and every
photograph of a visit is written with its visit's answers."""

from __future__ import annotations

import csv
import sys
from datetime import timedelta
from pathlib import Path

import pexpect
import pydicom
import pytest
from test_patient_cards import FRONTAL, REST, SMILE, T0, _card, _photo

pytestmark = pytest.mark.slow


def test_subject_asked_once_per_visit(tmp_path: Path) -> None:
    inbox, out = tmp_path / "DCIM", tmp_path / "out"
    inbox.mkdir()
    v2 = T0 + timedelta(minutes=35)
    _card("P100", inbox / "IMG_0001.jpg", T0)
    _photo(REST, inbox / "IMG_0002.jpg", T0 + timedelta(minutes=1))
    _photo(SMILE, inbox / "IMG_0003.jpg", T0 + timedelta(minutes=2))
    _photo(REST, inbox / "IMG_0004.jpg", v2)  # no card before the second visit
    _photo(FRONTAL, inbox / "IMG_0005.jpg", v2 + timedelta(minutes=1))
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "path,Modality,Protocol\nIMG_0002.jpg,XC,EV15\nIMG_0003.jpg,XC,EV19\n"
        "IMG_0004.jpg,XC,EV15\nIMG_0005.jpg,XC,IV07\n"
    )
    args = [str(inbox), "-o", str(out), "--manifest", str(manifest), "--no-models", "-j", "1"]
    child = pexpect.spawn(
        sys.executable,
        ["-m", "orthovision_cli", "convert", *args, "--no-fsync", "--confirm"],
        encoding="utf-8",
        timeout=120,
        dimensions=(50, 300),
    )
    try:
        child.expect("patient card IMG_0001.jpg")
        child.expect("the visit after it is P100's")
        child.expect("IMG_0002.jpg")
        child.expect(r"Age \(e.g. 12, 12Y, 8M\) \(Enter: leave empty\)")  # not the ID, not the date
        before = child.before or ""
        assert "Subject ID" not in before and "Acquisition date" not in before
        child.sendline("12")
        child.expect("Enter accepts")
        child.sendline("")
        child.expect("Same for the next")
        child.sendline("")
        child.expect("IMG_0003.jpg")
        child.expect("same visit, same subject data: Subject ID P100, Age 12")
        child.expect("Enter accepts")
        assert "Age (" not in (child.before or "")
        child.sendline("")
        child.expect("Same for the next")
        child.sendline("")
        child.expect("IMG_0004.jpg")  # a new visit, no card: asked, nothing offered from the last
        child.expect(r"Subject ID \(Enter: leave empty\)")
        child.sendline("P200")
        child.expect(r"Age \(e.g. 12, 12Y, 8M\) \(Enter: leave empty\)")
        child.sendline("9")
        child.expect("Enter accepts")
        child.sendline("")
        child.expect("Same for the next")
        child.sendline("")
        child.expect("IMG_0005.jpg")
        child.expect("same visit, same subject data: Subject ID P200, Age 9")
        child.expect("Enter accepts")
        child.sendline("")
        child.expect(pexpect.EOF)
        transcript = child.before or ""
    finally:
        child.close()
    assert child.exitstatus == 0, transcript
    assert "Subject ID (" not in transcript and "Age (" not in transcript
    written = {p.name: pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(out.rglob("*.dcm"))}
    got = {name[:8]: (ds.PatientID, ds.PatientAge) for name, ds in written.items()}
    assert got == {
        "IMG_0002": ("P100", "012Y"),
        "IMG_0003": ("P100", "012Y"),
        "IMG_0004": ("P200", "009Y"),
        "IMG_0005": ("P200", "009Y"),
    }
    studies: dict[str, set[str]] = {ds.PatientID: set() for ds in written.values()}
    for ds in written.values():
        studies[ds.PatientID].add(ds.StudyInstanceUID)
    assert [len(v) for v in studies.values()] == [1, 1] and studies["P100"] != studies["P200"]
    # Kept per file for later runs: the visit's answers in every one of its files' decisions.
    with (out / "orthovision-decisions.csv").open(newline="", encoding="utf-8") as f:
        rows = {Path(r["input"]).name: (r["patient_id"], r["age"]) for r in csv.DictReader(f)}
    assert rows == {
        "IMG_0002.jpg": ("", "012Y"),
        "IMG_0003.jpg": ("", "012Y"),
        "IMG_0004.jpg": ("P200", "009Y"),
        "IMG_0005.jpg": ("P200", "009Y"),
    }
