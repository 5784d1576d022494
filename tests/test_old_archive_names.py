"""File names as old shares hold them (issue 23): bytes that are not UTF-8, terminal escapes,
newlines, 251 characters. Each is built here and converted by the real command."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLE
from testdata import run_report

from orthovision_cli.display import shown
from orthovision_cli.naming import safe_component

PHOTO = SAMPLE / "photos" / "005_03.jpg"
LATIN1 = b"scan_\xe9t\xe9.jpg"  # 'scan_été.jpg' written by a Latin-1 system: not UTF-8


def _orthovision(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orthovision_cli", *args],
        capture_output=True,
        text=True,
        errors="surrogateescape",
        timeout=300,
        env={**os.environ, "CI": "", "PYTHONIOENCODING": "utf-8"},
    )


def _convert(src: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return _orthovision("convert", str(src), "-o", str(out), "--no-models", "--jobs", "1", *extra)


def _files(out: Path) -> dict[str, dict[str, object]]:
    report = run_report(out)
    return {str(f["rel"]): f for f in report["files"]}


def test_a_latin1_name_converts_and_keeps_its_bytes_in_state_and_report(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    shutil.copy(PHOTO, src / "good.jpg")
    shutil.copy(SAMPLE / "photos" / "005_08.jpg", os.fsdecode(bytes(src) + b"/" + LATIN1))
    for _ in range(2):  # a re-run once died the same way: both must finish
        proc = _convert(src, out)
        assert proc.returncode == 0, proc.stderr
        assert "internal error" not in proc.stderr
    files = _files(out)
    name = os.fsdecode(LATIN1)
    assert set(files) == {"good.jpg", name}
    assert os.fsencode(str(files[name]["input"])) == bytes(src) + b"/" + LATIN1  # byte-exact
    assert files[name]["status"] == "unchanged"  # the second run knew it
    outputs = files[name]["outputs"]
    assert isinstance(outputs, list) and len(outputs) == 1
    written = outputs[0]
    assert (out / str(written)).is_file()
    assert str(written).endswith("scan__t_.dcm")  # the output name is portable
    db = sqlite3.connect(out / ".orthovision" / "state.sqlite")
    paths = [row[0] for row in db.execute("SELECT path FROM inputs")]
    db.close()
    assert bytes(src) + b"/" + LATIN1 in paths  # the state holds the exact bytes


def test_hostile_names_are_shown_escaped_on_every_line(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    clear = "\x1b[2J\x1b[Hclear.jpg"
    forged = "a.jpg\nfailed: everything.jpg"
    for name in (clear, forged):
        (src / name).write_bytes(b"not an image at all")
    shutil.copy(PHOTO, src / "good.jpg")
    proc = _convert(src, out, "--verbose")
    assert proc.returncode == 4, proc.stderr
    assert "\x1b" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert not any(line.startswith("failed: everything.jpg") for line in lines)
    assert any("\\x1b[2J\\x1b[Hclear.jpg" in line for line in lines), proc.stderr
    assert any("a.jpg\\nfailed: everything.jpg" in line for line in lines), proc.stderr
    files = _files(out)  # the report keeps the names exactly
    assert files[clear]["status"] == files[forged]["status"] == "failed"


def test_shown_escapes_controls_raw_bytes_and_bidi_only() -> None:
    assert shown("plain é.jpg") == "plain é.jpg"
    assert shown("a\nb\r\t\x1b\x7f\x9b") == "a\\nb\\r\\t\\x1b\\x7f\\x9b"
    assert shown(os.fsdecode(LATIN1)) == "scan_\\xe9t\\xe9.jpg"
    assert shown("gpj.\u202eexe") == "gpj.\\u202eexe"


def test_a_251_character_name_is_cut_before_its_extension(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    long_name = "x" * 247 + ".jpg"
    assert len(long_name) == 251
    shutil.copy(PHOTO, src / long_name)
    proc = _convert(src, out)
    assert proc.returncode == 0, proc.stderr
    outputs = _files(out)[long_name]["outputs"]
    assert isinstance(outputs, list) and len(outputs) == 1
    written = outputs[0]
    assert str(written).endswith(".dcm")
    assert (out / str(written)).is_file()


@pytest.mark.parametrize("text", ["é" * 200 + ".dcm", "y" * 300 + ".dcm", "z" * 119 + ".tar.dcm"])
def test_long_components_keep_their_extension_within_the_byte_limit(text: str) -> None:
    cut = safe_component(text)
    assert cut.endswith(".dcm") and len(cut) <= 120 and len(cut.encode()) <= 200


def test_a_latin1_name_waiting_for_review_is_listed_with_its_bytes(tmp_path: Path) -> None:
    from orthovision_cli.batch.runner import run_convert
    from orthovision_cli.config import ConvertSettings
    from orthovision_cli.review.items import load_items

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    path = os.fsdecode(bytes(src) + b"/" + LATIN1)
    shutil.copy(PHOTO, path)
    # Nothing is sure enough at a confidence of 1.0: the file waits for a person.
    summary = run_convert(ConvertSettings(inputs=[src], output=out, jobs=1, min_confidence=1.0))
    assert [r.status for r in summary.results] == ["review"]
    (item,) = load_items(out)
    assert item.input == path and item.rel == os.fsdecode(LATIN1)
    assert item.sha256  # the state row was found by its exact bytes
