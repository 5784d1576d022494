"""`convert --confirm` through a real pseudo-terminal (pexpect): the person enters subject ID,
date and age, edits a view and an orientation, accepts; the DICOM carries it all."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pexpect
import pydicom
import pytest
from conftest import SAMPLE

pytestmark = pytest.mark.slow


def test_confirm_in_a_terminal(tmp_path: Path) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    (inbox / "a").mkdir(parents=True)
    (inbox / "b").mkdir()
    shutil.copy(SAMPLE / "photos" / "005_08.jpg", inbox / "a")  # the view is unsure: review
    shutil.copy(SAMPLE / "radiographs" / "IMG0003297.jpg", inbox / "b")  # film or digital?
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "orthovision_cli",
            "convert",
            str(inbox),
            "-o",
            str(out),
            "-j",
            "1",
            "--no-fsync",
            "--confirm",
        ],
        encoding="utf-8",
        timeout=120,
        dimensions=(50, 160),
    )
    try:
        child.expect("a/005_08.jpg")
        child.expect(r"Subject ID \(Enter: leave empty\)")  # never an empty "()"
        assert "()" not in (child.before or "")
        child.sendline("S001")
        child.expect(r"Acquisition date")
        child.sendline("2001-05-06")
        child.expect("Age")
        child.sendline("twelve")  # not an age: asked again
        child.expect("not an age")
        child.expect("Age")
        child.sendline("12")
        child.expect("EV15")  # the proposal shown
        child.expect("Enter accepts")
        child.sendline("p")
        child.expect("protocol")
        child.sendline("EV08")
        child.expect("EV08")
        child.expect("Enter accepts")
        child.sendline("")
        # A limb radiograph whose file does not say film or digital: asked once for the folder.
        child.expect("Are the radiographs in")
        child.sendline("d")
        child.expect("b/IMG0003297.jpg")
        child.expect(r"Subject ID \(Enter: S001\)")  # the previous answers are the defaults
        child.sendline("")
        child.expect(r"\(Enter: 2001-05-06\)")
        child.sendline("")
        child.expect(r"\(Enter: 12\)")
        child.sendline("")
        child.expect("Enter accepts")
        child.sendline("o")
        child.expect("orientation")
        child.sendline("90")
        child.expect("Enter accepts")
        child.sendline("")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before

    photo = pydicom.dcmread(next(out.rglob("005_08.dcm")))
    assert photo.PatientID == "S001" and photo.StudyDate == "20010506" and photo.PatientAge == "012Y"
    assert str(photo.ProtocolName) == "Orthodontic Extraoral Series"  # the series' family
    assert "protocol=EV08 (person, 1.00)" in str(
        photo.ContributingEquipmentSequence[0].ContributionDescription
    )
    xray = pydicom.dcmread(next(out.rglob("IMG0003297.dcm")))
    assert xray.PatientID == "S001" and xray.PatientAge == "012Y"
    assert xray.Modality == "DX"  # the folder's answer: digital
    assert 'acquisition = "digital"' in (out / "orthovision-settings.toml").read_text(encoding="utf-8")
    # Turned a quarter clockwise: the stored rows are the source's columns.
    from PIL import Image

    src = np.asarray(Image.open(inbox / "b" / "IMG0003297.jpg").convert("L"))
    assert (xray.Rows, xray.Columns) == (src.shape[1], src.shape[0]) != src.shape
    rows = {Path(r["input"]).name: r for r in csv.DictReader((out / "orthovision-decisions.csv").open())}
    assert rows["005_08.jpg"]["protocol"] == "EV08" and rows["IMG0003297.jpg"]["orientation"] == "90"


def test_confirm_needs_a_terminal(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orthovision_cli",
            "convert",
            str(SAMPLE / "photos"),
            "-o",
            str(tmp_path / "out"),
            "--confirm",
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert proc.returncode == 2 and "needs a terminal" in proc.stderr
    assert "Traceback" not in proc.stderr
