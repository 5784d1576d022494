"""`orthovision watch` in a real pseudo-terminal, as a scan station runs it all day: the live
progress bar is drawn (it is not, with stderr piped), several batches arrive while it runs, and
Ctrl-C stops it with exit 130 and a consistent output."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pexpect
import pytest
from testdata import DATA

pytestmark = pytest.mark.slow

PHOTOS = sorted((DATA / "photos" / "faces_canada").glob("*.jpg"))[:3]
LABELS = ["--no-models", "--modality", "XC", "--body-part", "HEAD", "--patient-id", "W1"]


def _spawn(args: list[str]) -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable,
        ["-m", "orthovision_cli", *args],
        encoding="utf-8",
        timeout=90,
        dimensions=(40, 100),
        env={"PATH": "/usr/bin:/bin", "TERM": "xterm-256color", "PYTHONPATH": str(Path.cwd())},
    )


def test_watch_in_a_terminal_takes_three_batches_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    child = _spawn(
        ["watch", str(inbox), "-o", str(out), "-j", "1", "--interval", "0.3", "--settle", "0.5", *LABELS]
    )
    try:
        child.expect("Ctrl-C stops")
        for batch in range(3):
            folder = inbox / f"batch{batch}"
            folder.mkdir()
            for src in PHOTOS:  # distinct content per batch: bytes after the image
                (folder / src.name).write_bytes(src.read_bytes() + bytes(batch + 1))
            child.expect(r"orthovision watch: (\d+) converted")
            assert child.match.group(1) == str(len(PHOTOS)), child.before
            time.sleep(1.0)  # a few seconds apart, with idle looks between them
        child.sendintr()
        child.expect(pexpect.EOF)
        text = child.before or ""
    finally:
        child.close(force=False)
        if child.isalive():
            child.terminate(force=True)
    assert "internal error" not in text and "Traceback" not in text, text
    assert child.exitstatus == 130, (child.exitstatus, text)
    assert f"orthovision review {out}" in text  # the stop names what to do next
    dcm = sorted(out.rglob("*.dcm"))
    assert len(dcm) == 3 * len(PHOTOS), [p.name for p in dcm]
    assert not [p for p in out.rglob("*") if p.name.startswith(".orthovision-tmp-")]


def test_watch_once_on_an_empty_inbox_says_so(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    child = _spawn(["watch", str(inbox), "-o", str(tmp_path / "out"), "--once", "--settle", "0", *LABELS])
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 3
    assert "no image file in" in (child.before or "")


def test_debug_is_taken_after_the_sub_command_too(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(PHOTOS[0], inbox / "a.jpg")
    child = _spawn(["convert", str(inbox), "-o", str(tmp_path / "out"), *LABELS, "--debug"])
    child.expect(pexpect.EOF)
    child.close()
    assert "No such option" not in (child.before or ""), child.before
    assert child.exitstatus == 0, child.before
