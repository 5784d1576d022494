"""The coordinator's bounded memory (issue 25): a run's results live in a log on disk
(`ResultLog`) and come back equal; analyses back from the workers share this process's objects
(`Sharing`) without changing any value; the probe kept has no JPEG segment tables and the writer
reads them again."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from hostile import jpeg, photo
from hypothesis import given
from hypothesis import strategies as st

from orthovision_cli.batch.results import (
    Analysed,
    FileResult,
    ResultLog,
    RunSummary,
    Visits,
)
from orthovision_cli.batch.resume import unchanged_line
from orthovision_cli.batch.sharing import Sharing
from orthovision_cli.batch.walk import FoundInput
from orthovision_cli.dicom.plan import PatientInfo, PlanInput
from orthovision_cli.inputs.reader import kept_probe, load_pixels, probe
from orthovision_cli.labels.model import Label, Labels
from orthovision_cli.types import FileStatus, JpegPixels


def _result(rel: str, status: FileStatus, **kw: object) -> FileResult:
    return FileResult(f"/in/{rel}", rel, status, **kw)  # type: ignore[arg-type]


def test_results_come_back_from_the_log_equal_and_the_report_lines_sorted(tmp_path: Path) -> None:
    latin1 = os.fsdecode(b"scan_\xe9t\xe9.jpg")  # not UTF-8: kept as \udcXX escapes
    given = [
        _result("b.jpg", FileStatus.CONVERTED, outputs=["P/b.dcm"], labels={"modality": {"value": "XC"}}),
        _result("a.jpg", FileStatus.FAILED, reason="corrupt", message="cannot decode"),
        _result(latin1, FileStatus.REVIEW, reason="needs-review"),
        _result("c.jpg", FileStatus.CONVERTED, warnings=["PIL: Truncated File Read"]),
        _result("d.jpg", FileStatus.CONVERTED, superseded=[{"file": "old.dcm"}, {"file": "old2.dcm"}]),
    ]
    log = ResultLog(tmp_path, given[:2])
    log.extend(given[2:])
    assert len(log) == 5 and list(tmp_path.iterdir()) == []  # an unlinked file: nothing left behind
    back = list(log)
    assert [r.as_dict() for r in back] == [r.as_dict() for r in given]
    assert log[2].path == f"/in/{latin1}" and log[2].status == "review"
    assert log.counts == {"converted": 3, "failed": 1, "review": 1}
    assert log.superseded == 2
    assert [r.rel for r in log.of_status(FileStatus.REVIEW)] == [latin1]
    lines = list(log.report_lines())
    assert [line.decode("ascii").split('"rel": ')[1].split(",")[0] for line, _ in lines] == [
        '"a.jpg"',
        '"b.jpg"',
        '"c.jpg"',
        '"d.jpg"',
        '"scan_\\udce9t\\udce9.jpg"',
    ]
    # Needing attention: failed, review, and a converted file with a library's warning.
    assert [attention for _, attention in lines] == [True, False, True, False, True]
    summary = RunSummary(log, 0, tmp_path)  # type: ignore[arg-type]
    assert summary.counts == log.counts and summary.superseded == 2
    assert [r.rel for r in summary.of_status(FileStatus.FAILED)] == ["a.jpg"]


def _analysed(path: Path, rel: str, patient: PatientInfo) -> Analysed:
    pr = kept_probe(probe(path))
    labels = Labels(modality=Label("modality", "XC", 1.0, "option"))
    digest = "0" * 64
    item = PlanInput(digest, rel, pr, labels, patient, digest)
    # As a worker's answer arrives: every string and object a copy of its own.
    return Analysed("".join(str(path)), "".join(rel), 1, 1, plan_input=item)


def test_analyses_share_equal_facts_and_keep_their_values(tmp_path: Path) -> None:
    paths = []
    for i in range(3):
        p = tmp_path / f"img{i}.jpg"
        p.write_bytes(jpeg(photo((64 + 16 * (i == 2), 48))))
        paths.append(p)
    todo = [FoundInput(p, p.name, "") for p in paths]
    share = Sharing(todo)
    same, other = PatientInfo(patient_id="P1"), PatientInfo(patient_id="P2")
    got = [
        share(_analysed(p, p.name, pat))
        for p, pat in zip(paths, (same, PatientInfo(patient_id="P1"), other), strict=True)
    ]
    items = [a.plan_input for a in got]
    assert all(i is not None for i in items)
    a0, a1, a2 = (i for i in items if i is not None)
    assert got[0].found_path is todo[0].path_str and a0.probe.path == todo[0].path
    assert a0.rel is todo[0].rel
    assert (
        a0.patient is a1.patient
        and a1.patient == PatientInfo(patient_id="P1")
        and a2.patient.patient_id == "P2"
    )
    assert a0.probe.pages[0] is a1.probe.pages[0]  # same layout: one PageFacts
    assert a2.probe.pages[0].columns == 80 and a0.probe.pages[0].columns == 64  # differing: its own
    assert a0.probe.jpeg is not None and a1.probe.jpeg is not None
    assert a0.probe.jpeg.components is a1.probe.jpeg.components
    assert a0.labels == Labels(modality=Label("modality", "XC", 1.0, "option"))
    # An answer for a path this run did not ask about is left as it is.
    stray = _analysed(paths[0], "elsewhere.jpg", same)
    stray = replace(stray, found_path="/not/asked.jpg")
    assert share(stray) is stray and stray.rel == "elsewhere.jpg"


def test_the_kept_probe_has_no_segment_tables_and_the_writer_reads_them_again(tmp_path: Path) -> None:
    p = tmp_path / "img.jpg"
    p.write_bytes(jpeg(photo((64, 48))))
    full = probe(p)
    kept = kept_probe(full)
    assert full.jpeg is not None and kept.jpeg is not None
    assert full.jpeg.segments and kept.jpeg.segments == [] and kept.jpeg.late_segments == []
    assert (kept.jpeg.rows, kept.jpeg.columns, kept.jpeg.components) == (48, 64, full.jpeg.components)
    # Passed through byte for byte: the same ranges of the file as from the whole probe.
    (px_full,) = load_pixels(full)
    (px_kept,) = load_pixels(kept)
    assert isinstance(px_kept.pixels, JpegPixels) and isinstance(px_full.pixels, JpegPixels)
    assert px_kept.pixels.ranges == px_full.pixels.ranges and px_kept.pixels.ranges
    assert px_kept.pixels.info.segments == full.jpeg.segments


_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12) | st.just(
    os.fsdecode(b"scan_\xe9t\xe9.jpg")  # a non-UTF-8 name: \udcXX escapes
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)


@given(
    path=_text,
    rel=_text,
    content_hash=st.text("0123456789abcdef", max_size=64),
    outputs=st.lists(_text, max_size=3),
    labels=st.dictionaries(_text, _json, max_size=4),
)
def test_an_unchanged_inputs_line_is_the_line_of_its_result(
    path: str, rel: str, content_hash: str, outputs: list[str], labels: dict[str, object]
) -> None:
    """A re-run writes an unchanged input's report line from its state row's JSON text as
    stored (compact separators, ASCII) without decoding it: the same object as its FileResult's
    line, and a ResultLog reads it back as that result."""
    stored_outputs = json.dumps(outputs, separators=(",", ":"))  # as StateStore.put stores them
    stored_labels = json.dumps(labels, separators=(",", ":"))
    line = unchanged_line(path, rel, content_hash, stored_outputs, stored_labels)
    result = FileResult(
        path, rel, FileStatus.UNCHANGED, outputs=outputs, labels=labels, content_hash=content_hash
    )
    assert line.line.endswith(b"\n") and b"\n" not in line.line[:-1]
    assert json.loads(line.line) == json.loads(json.dumps(result.as_dict()))
    with tempfile.TemporaryDirectory() as folder:
        log = ResultLog(Path(folder), [line])
        assert log[0].as_dict() == json.loads(json.dumps(result.as_dict()))
        assert log.counts == {"unchanged": 1} and list(log.report_lines()) == [(line.line, False)]
        log.close()


def test_visits_kept_as_json_read_back_in_order_a_later_part_replacing() -> None:
    """A run's visits are kept as compact JSON (issue 25): read back equal, in the order of first
    capture, a study's later entry (a later part) in place of its earlier one, and as JSON for the
    report without making their dicts."""
    early = {"study_uid": "2.25.2", "first": "2026-03-02T09:00:00", "photos": 3, "missing": ["EV15"]}
    later = {"study_uid": "2.25.1", "first": "2026-03-02T10:00:00", "photos": 8, "missing": []}
    undated = {"study_uid": "2.25.3", "first": "", "photos": 1, "missing": [os.fsdecode(b"\xe9")]}
    visits = Visits([later, early])
    visits.put(undated)
    visits.put({**early, "photos": 9, "missing": []})  # the study again, in a later part
    got = list(visits)
    assert [v["study_uid"] for v in got] == ["2.25.3", "2.25.2", "2.25.1"]
    assert got[1] == {**early, "photos": 9, "missing": []} and got[0] == undated and len(visits) == 3
    assert [json.loads(raw) for raw in visits.raw()] == got


@given(batches=st.lists(st.tuples(st.booleans(), st.lists(st.tuples(_text, _text), max_size=5)), max_size=6))
def test_quiet_lines_added_in_batches_read_as_added_one_by_one(
    batches: list[tuple[bool, list[tuple[str, str]]]],
) -> None:
    """`append_quiet` (a re-run's unchanged lines, a batch at a time: issue 25) keeps the same
    log as `append` line by line, between results of other statuses."""
    with tempfile.TemporaryDirectory() as folder:
        one, many = ResultLog(Path(folder)), ResultLog(Path(folder))
        for failed, items in batches:
            if failed:  # a result of another status in between
                r = FileResult("/x/" + str(len(one)), "f" + str(len(one)), FileStatus.FAILED, "reason")
                one.append(r)
                many.append(r)
            lines = [unchanged_line(p, rel, "ab", "[]", "{}") for p, rel in items]
            for line in lines:
                one.append(line)
            many.append_quiet([x.rel for x in lines], [x.line for x in lines])
        assert len(many) == len(one) and many.counts == one.counts
        assert [r.as_dict() for r in many] == [r.as_dict() for r in one]
        assert list(many.report_lines()) == list(one.report_lines())
        assert many.of_status(FileStatus.UNCHANGED) == one.of_status(FileStatus.UNCHANGED)
        one.close()
        many.close()


@given(
    first=st.lists(st.tuples(_text, _text), max_size=8),
    later=st.lists(st.tuples(st.booleans(), _text), max_size=8),
)
def test_the_report_copied_from_the_log_is_its_sorted_lines(
    first: list[tuple[str, str]], later: list[tuple[bool, str]]
) -> None:
    """`copy_report` (runs of lines copied by the kernel) writes `report_lines`, byte for byte,
    and names the lines that need attention, whether the first lines were adopted from another
    process's writes into the log's file or appended."""
    with tempfile.TemporaryDirectory() as folder:
        for adopt in (False, True):
            log = ResultLog(Path(folder))
            lines = [unchanged_line(p, rel, "ab", "[]", "{}") for p, rel in first]
            if adopt:  # the triage's second process writes them from the file's start
                os.pwrite(log.fileno(), b"".join(x.line for x in lines), 0)
                log.adopt([x.rel for x in lines], [len(x.line) for x in lines])
            else:
                log.append_quiet([x.rel for x in lines], [x.line for x in lines])
            for failed, rel in later:
                status = FileStatus.FAILED if failed else FileStatus.CONVERTED
                log.append(FileResult("/x/" + rel, rel, status, "reason" if failed else ""))
            want = list(log.report_lines())
            with tempfile.TemporaryFile() as f:
                n, attention = log.copy_report(f.fileno())
                f.seek(0)
                assert f.read() == b"".join(line for line, _ in want)
            assert n == len(want) == len(first) + len(later)
            assert attention == [line.rstrip(b"\n") for line, needed in want if needed]
            log.close()
