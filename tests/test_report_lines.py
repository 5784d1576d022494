"""A report that scales (issue 25): `orthovision-report.json` holds the run's summary and only the
inputs that need attention; every input's entry is one line of `orthovision-report.jsonl`; both
are replaced whole; a reader of per-file entries also reads a report written before the split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from hostile import jpeg, photo, segments
from hypothesis import given
from hypothesis import strategies as st
from testdata import DATA, orthovision

from orthovision_cli.batch.report import LINES, REPORT, read_report, report_files
from orthovision_cli.batch.results import FileResult
from orthovision_cli.batch.resume import output_list, unchanged_line
from orthovision_cli.errors import ExitCode
from orthovision_cli.types import FileStatus

PHOTOS = sorted((DATA / "photos" / "faces_canada").glob("*.jpg"))[:3]
LABELS = ["--no-models", "--modality", "XC", "--body-part", "HEAD", "--patient-id", "P1"]
ENTRY_KEYS = {
    "input",
    "rel",
    "sha256",
    "status",
    "reason",
    "message",
    "outputs",
    "labels",
    "seconds",
    "warnings",
}


def _inbox(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for i, p in enumerate(PHOTOS):
        shutil.copy(p, src / ("sub" if i else "") / p.name)
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 32)  # failed
    (src / "notes.txt").write_text("not an image\n")  # ignored
    return src


def _lines(out: Path) -> list[dict[str, Any]]:
    text = (out / LINES).read_text(encoding="ascii")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_the_summary_lists_what_needs_attention_and_the_lines_every_input(tmp_path: Path) -> None:
    src, out = _inbox(tmp_path), tmp_path / "out"
    proc = orthovision("convert", str(src), "-o", str(out), *LABELS, "--jobs", "2")
    assert proc.returncode == ExitCode.SOME_FAILED, proc.stderr
    report = read_report(out)
    assert "files" not in report  # an old reader fails loudly rather than seeing a part as all
    lines = _lines(out)
    assert report["files_total"] == len(lines) == len(PHOTOS) + 2
    assert report["files_jsonl"] == LINES
    assert [f["rel"] for f in lines] == sorted(f["rel"] for f in lines)  # one order, run to run
    assert all(set(f) == ENTRY_KEYS for f in lines), lines[0].keys()
    by_status = {f["rel"]: f["status"] for f in lines}
    assert by_status == {
        "broken.jpg": "failed",
        "notes.txt": "ignored",
        PHOTOS[0].name: "converted",
        **{f"sub/{p.name}": "converted" for p in PHOTOS[1:]},
    }
    # The summary's entries are the lines of the inputs a person should look at, byte for byte.
    assert [f["rel"] for f in report["attention"]] == ["broken.jpg", "notes.txt"]
    assert [f for f in lines if f["rel"] in ("broken.jpg", "notes.txt")] == report["attention"]
    assert report["counts"] == {"converted": len(PHOTOS), "failed": 1, "ignored": 1}
    assert {"exit_code", "fatal", "seconds", "warnings", "notices", "superseded", "visits"} <= set(report)
    assert list(report_files(out)) == lines
    assert not list(out.glob("*.tmp"))

    # A re-run replaces both: every input again (unchanged), the same inputs need attention.
    again = orthovision("convert", str(src), "-o", str(out), *LABELS, "--jobs", "2")
    assert again.returncode == ExitCode.SOME_FAILED, again.stderr
    lines = _lines(out)
    assert len(lines) == len(PHOTOS) + 2
    assert sorted(f["status"] for f in lines) == ["failed", "ignored"] + ["unchanged"] * len(PHOTOS)
    assert [f["rel"] for f in read_report(out)["attention"]] == ["broken.jpg", "notes.txt"]


def test_an_input_with_a_warning_needs_attention(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    # Damaged compressed data: passed on byte for byte, with a warning in its entry.
    data = bytearray(jpeg(photo((256, 192))))
    sos = next(s for s in segments(bytes(data)) if s[0] == 0xDA)
    for k in range(sos[1] + sos[2] + 100, len(data) - 50, 700):
        data[k] ^= 0x55
    (src / "damaged.jpg").write_bytes(bytes(data))
    shutil.copy(PHOTOS[1], src / "good.jpg")
    proc = orthovision("convert", str(src), "-o", str(out), *LABELS)
    lines = {f["rel"]: f for f in _lines(out)}
    assert lines["good.jpg"]["status"] == "converted" and lines["good.jpg"]["warnings"] == []
    damaged = lines["damaged.jpg"]
    assert damaged["warnings"], (damaged, proc.stderr)
    assert read_report(out)["attention"] == [damaged]


def test_a_report_written_before_the_split_is_read_with_every_input(tmp_path: Path) -> None:
    entries = [{"input": f"/in/{n}.jpg", "rel": f"{n}.jpg", "status": "converted"} for n in "abc"]
    old = {"tool": "orthovision-cli", "exit_code": 0, "counts": {"converted": 3}, "files": entries}
    (tmp_path / REPORT).write_text(json.dumps(old), encoding="ascii")
    # A stale .jsonl beside it (a newer version ran before) is not what this report speaks of.
    (tmp_path / LINES).write_text(json.dumps(entries[0]) + "\n", encoding="ascii")
    assert list(report_files(tmp_path)) == entries


# --- a re-run's unchanged lines, made without the JSON encoder's Python layer (issue 25) ---


# Names as a file system gives them: any character, and undecodable bytes as \udcXX.
NAMES = st.text(st.characters(exclude_categories=["Cs"]) | st.sampled_from(["\udcff", "\udc80", '"', "\\"]))


@given(st.lists(NAMES, max_size=4))
def test_the_state_outputs_read_fast_are_what_json_reads(outputs: list[str]) -> None:
    for text in (json.dumps(outputs, separators=(",", ":")), json.dumps(outputs)):
        assert output_list(text) == json.loads(text)


@given(NAMES, NAMES, st.lists(NAMES, max_size=2), st.dictionaries(NAMES, NAMES, max_size=2))
def test_an_unchanged_line_is_the_line_of_its_result(
    path: str, rel: str, outputs: list[str], labels: dict[str, str]
) -> None:
    """The line made from the state's text is, once read, the report entry of the same result."""
    o, lab = json.dumps(outputs, separators=(",", ":")), json.dumps(labels, separators=(",", ":"))
    line = unchanged_line(path, rel, "ab" * 32, o, lab).line
    assert line.isascii() and line.endswith(b"\n") and line.count(b"\n") == 1
    expected = FileResult(path, rel, FileStatus.UNCHANGED, "", "", outputs, labels, "ab" * 32).as_dict()
    assert json.loads(line) == json.loads(json.dumps(expected))
