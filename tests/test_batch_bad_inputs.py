"""A batch full of bad inputs converts every good file, reports each bad one with its reason
code and a one-line message, and exits with "some files failed"; a user's mistakes on the
command line give exit 2 and one line, never a traceback."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from conftest import dciodvfy
from corpus import LABEL_ARGS, make_corpus, outputs, run_convert_process
from PIL import Image
from testdata import run_report
from typer.testing import CliRunner

from orthovision_cli.batch import parts, runner
from orthovision_cli.batch.runner import run_convert
from orthovision_cli.cli import app
from orthovision_cli.config import ConvertSettings
from orthovision_cli.errors import ExitCode

# name -> (status, reason code) the run must report
EXPECTED: dict[str, tuple[str, str]] = {
    "truncated.jpg": ("failed", "truncated-data"),
    "empty.jpg": ("failed", "corrupt-data"),
    "text.jpg": ("failed", "unsupported-format"),
    "broken-ifd.tif": ("failed", "corrupt-data"),
    "broken-strips.tif": ("failed", "corrupt-data"),
    "huge.jpg": ("failed", "image-too-large"),
    "huge.tif": ("failed", "image-too-large"),
    "huge.png": ("failed", "image-too-large"),
    "fifo.jpg": ("failed", "unreadable"),
    "loop.jpg": ("failed", "unreadable"),
    "broken-link.jpg": ("failed", "unreadable"),
}


def _tiff_tags(data: bytes) -> dict[str, Any]:
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        page = tif.pages[0]
        assert isinstance(page, tifffile.TiffPage)
        return {tag.name: tag for tag in page.tags.values()}


def _patch_long(data: bytearray, tag: Any, value: int) -> None:
    """Make a SHORT/LONG tag a LONG holding `value` (in place: the entry has room for 4 bytes)."""
    data[tag.offset + 2 : tag.offset + 8] = struct.pack("<HI", 4, 1)
    data[tag.valueoffset : tag.valueoffset + 4] = struct.pack("<I", value)


def make_bad_inputs(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.open(Path(__file__).resolve().parents[1] / "sample_data" / "photos" / "005_03.jpg")
    buf = io.BytesIO()
    photo.convert("RGB").crop((400, 350, 720, 590)).save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    (folder / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("Patient list, not a photograph\n")
    # A header that claims 65500x65500 (JPEG's limit is 65535): refused before any decoding.
    big = bytearray(jpeg)
    sof = big.index(b"\xff\xc0")
    big[sof + 5 : sof + 9] = struct.pack(">HH", 65500, 65500)
    (folder / "huge.jpg").write_bytes(bytes(big))

    tif = io.BytesIO()
    tifffile.imwrite(tif, np.full((64, 64), 7, np.uint8), photometric="minisblack")
    good_tif = tif.getvalue()
    tags = _tiff_tags(good_tif)
    ifd = bytearray(good_tif)
    ifd[4:8] = struct.pack("<I", len(good_tif) + 1000)  # first IFD past the end of the file
    (folder / "broken-ifd.tif").write_bytes(bytes(ifd))
    strips = bytearray(good_tif)
    at = tags["StripOffsets"].valueoffset
    strips[at : at + 4] = struct.pack("<I", 10_000_000)  # pixel data far past the end
    (folder / "broken-strips.tif").write_bytes(bytes(strips))
    huge_tif = bytearray(good_tif)
    for name in ("ImageWidth", "ImageLength"):
        _patch_long(huge_tif, tags[name], 100_000)
    (folder / "huge.tif").write_bytes(bytes(huge_tif))

    png = io.BytesIO()
    Image.new("L", (8, 8)).save(png, "PNG")
    huge_png = bytearray(png.getvalue())
    huge_png[16:24] = struct.pack(">II", 100_000, 100_000)  # IHDR width, height
    huge_png[29:33] = struct.pack(">I", zlib.crc32(bytes(huge_png[12:29])))  # a valid chunk
    (folder / "huge.png").write_bytes(bytes(huge_png))

    os.mkfifo(folder / "fifo.jpg")  # opening it would block for ever
    os.symlink("loop.jpg", folder / "loop.jpg")
    os.symlink("nowhere.jpg", folder / "broken-link.jpg")
    os.symlink("..", folder / "parent-loop")  # a folder loop: walked once, not for ever
    (folder / "Thumbs.db").write_bytes(b"\x00" * 32)  # clutter: not an input at all


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, list[Path]]:
    src = tmp_path / "in"
    good = make_corpus(src / "good", 4, clutter=False)  # JPEG, PNG, 8- and 16-bit TIFF
    make_bad_inputs(src / "bad")
    return src, good


def _one_line(text: str) -> bool:
    return bool(text) and "\n" not in text and "Traceback" not in text


@pytest.mark.external
def test_bad_inputs_are_reported_and_good_ones_converted(
    tree: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    src, good = tree
    out = tmp_path / "out"
    proc = run_convert_process(src, out, "--json")
    assert proc.returncode == ExitCode.SOME_FAILED, proc.stderr
    assert "Traceback" not in proc.stderr
    printed = json.loads(proc.stdout)
    saved = run_report(out)
    for report in (printed, saved):
        assert report["exit_code"] == ExitCode.SOME_FAILED
        by_name = {Path(f["rel"]).name: f for f in report["files"]}
        assert set(by_name) == set(EXPECTED) | {p.name for p in good}
        for name, (status, reason) in EXPECTED.items():
            f = by_name[name]
            assert (f["status"], f["reason"]) == (status, reason), f
            assert _one_line(f["message"]) and f["outputs"] == [], f
        for p in good:
            assert by_name[p.name]["status"] == "converted"
        assert report["counts"] == {"converted": len(good), "failed": len(EXPECTED)}
    files = outputs(out)
    assert sorted(f.stem for f in files) == sorted(p.stem for p in good)
    for f in files:
        assert dciodvfy(f)[0] == []


@pytest.mark.parametrize("stage", ["after-walk", "before-write"])
def test_file_vanishing_mid_run(
    tree: tuple[Path, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    """A good file deleted after the walk (before analysis) or after analysis (before its pixels
    are read in a worker) fails alone, with its reason; the others are converted."""
    src, good = tree
    victim = good[0]
    name = "find_inputs" if stage == "after-walk" else "plan_batch"
    where = runner if stage == "after-walk" else parts
    real: Callable[..., Any] = getattr(where, name)

    def deleting(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        victim.unlink(missing_ok=True)
        return result

    monkeypatch.setattr(where, name, deleting)
    out = tmp_path / "out"
    settings = ConvertSettings(
        inputs=[src / "good"],
        output=out,
        use_models=False,
        jobs=2,
        labels={"modality": "OT", "body_part": "HEAD"},
    )
    summary = run_convert(settings)
    assert summary.exit_code == ExitCode.SOME_FAILED
    by_name = {Path(r.path).name: r for r in summary.results}
    lost = by_name[victim.name]
    assert lost.status == "failed" and lost.outputs == []
    assert lost.reason == ("unreadable" if stage == "after-walk" else "vanished"), lost
    assert "No such file" in lost.message and _one_line(lost.message)
    assert sorted(r.status for n, r in by_name.items() if n != victim.name) == ["converted"] * 3
    monkeypatch.undo()
    # The file is gone for good: the next run has nothing left to do and says all is well.
    again = run_convert(settings)
    assert again.exit_code == ExitCode.OK and again.counts == {"unchanged": 3}


def test_file_rewritten_between_analysis_and_write(
    tree: tuple[Path, list[Path]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A photo re-saved by another program mid-run must not give a DICOM made of the old
    analysis and the new bytes: it fails as changed, and the next run converts the new one."""
    src, good = tree
    victim = next(p for p in good if p.suffix == ".jpg")
    real = parts.plan_batch

    def rewriting(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        with Image.open(victim) as im:
            im.rotate(90, expand=True).save(victim, "JPEG", quality=80)
        return result

    monkeypatch.setattr(parts, "plan_batch", rewriting)
    out = tmp_path / "out"
    settings = ConvertSettings(
        inputs=[src / "good"],
        output=out,
        use_models=False,
        jobs=1,
        labels={"modality": "OT", "body_part": "HEAD"},
    )
    summary = run_convert(settings)
    changed = next(r for r in summary.results if Path(r.path) == victim)
    assert (changed.status, changed.reason, changed.outputs) == ("failed", "changed", [])
    assert summary.exit_code == ExitCode.SOME_FAILED
    monkeypatch.undo()
    again = run_convert(settings)
    assert again.exit_code == ExitCode.OK
    assert again.counts == {"converted": 1, "unchanged": 3}
    assert len(outputs(out)) == 4


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    src = tmp_path / "in"
    make_corpus(src, 1, clutter=False)
    locked = src / "locked.jpg"
    locked.write_bytes(
        (Path(__file__).resolve().parents[1] / "sample_data" / "radiographs" / "IMG0003297.jpg").read_bytes()
    )
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip(
                "running as root: permissions do not block reads here (the FIFO, link "
                "and vanished-file cases cover unreadable inputs)"
            )
        summary = run_convert(
            ConvertSettings(
                inputs=[src],
                output=tmp_path / "out",
                use_models=False,
                labels={"modality": "OT", "body_part": "HEAD"},
            )
        )
    finally:
        locked.chmod(0o644)
    r = next(r for r in summary.results if Path(r.path) == locked)
    assert (r.status, r.reason) == ("failed", "permission-denied")
    assert summary.exit_code == ExitCode.SOME_FAILED


# ---------------------------------------------------------------- the user's mistakes


def _toml(tmp: Path, text: str) -> str:
    path = tmp / "bad.toml"
    path.write_text(text)
    return str(path)


USAGE_CASES: dict[str, Callable[[Path], list[str]]] = {
    "jobs-not-a-number": lambda t: ["IN", "-o", "OUT", "--jobs", "two"],
    "jobs-negative": lambda t: ["IN", "-o", "OUT", "--jobs", "-1"],
    "bad-collision-policy": lambda t: ["IN", "-o", "OUT", "--on-collision", "rename"],
    "confidence-out-of-range": lambda t: ["IN", "-o", "OUT", "--min-confidence", "7"],
    "unknown-placeholder": lambda t: ["IN", "-o", "OUT", "--name-template", "{Colour}.dcm"],
    "bad-date": lambda t: ["IN", "-o", "OUT", "--study-date", "2024-13-45"],
    "missing-input": lambda t: [str(t / "nowhere"), "-o", "OUT"],
    "no-output": lambda t: ["IN"],
    "no-input": lambda t: ["-o", "OUT"],
    "missing-manifest": lambda t: ["IN", "-o", "OUT", "--manifest", str(t / "none.csv")],
    "manifest-without-path-column": lambda t: [
        "IN",
        "-o",
        "OUT",
        "--manifest",
        _file(t / "m.csv", "name;Modality\na.jpg;XC\n"),
    ],
    "toml-syntax": lambda t: ["--config", _toml(t, "jobs = \n")],
    "toml-unknown-key": lambda t: ["--config", _toml(t, "colour = 3\n")],
    "toml-wrong-type": lambda t: ["--config", _toml(t, 'jobs = "two"\n')],
    "toml-wrong-list": lambda t: ["--config", _toml(t, "inputs = 3\n")],
    "toml-confidence-text": lambda t: ["--config", _toml(t, 'min_confidence = "high"\n')],
    "missing-config": lambda t: ["--config", str(t / "none.toml")],
}


def _file(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("case", list(USAGE_CASES))
def test_usage_errors_exit_2_in_one_line(case: str, tmp_path: Path) -> None:
    src = tmp_path / "in"
    make_corpus(src, 1, clutter=False)
    args = [
        a.replace("IN", str(src)).replace("OUT", str(tmp_path / "out")) if a in ("IN", "OUT") else a
        for a in USAGE_CASES[case](tmp_path)
    ]
    result = CliRunner().invoke(app, ["convert", *LABEL_ARGS, *args])
    text = result.stdout + result.stderr
    assert result.exit_code == ExitCode.USAGE, text
    assert "Traceback" not in text
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if not case.startswith("jobs-not"):  # that one is the option parser's own boxed message
        lines = [ln for ln in text.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert not list((tmp_path / "out").rglob("*.dcm"))


def test_unusable_output_folder_stops_with_exit_5(tmp_path: Path) -> None:
    src = tmp_path / "in"
    make_corpus(src, 1, clutter=False)
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should go")
    result = CliRunner().invoke(app, ["convert", str(src), "-o", str(blocker / "out"), *LABEL_ARGS])
    assert result.exit_code == ExitCode.FATAL
    lines = [ln for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and "cannot create output folder" in lines[0], lines
