"""Zip archives as inputs: members convert like files in a folder, once."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Any

import pydicom
from conftest import SAMPLE

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings
from orthovision_cli.errors import ExitCode

PHOTOS = SAMPLE / "photos"


def _archive(tmp_path: Path) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    zpath = src / "export.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(PHOTOS / "005_03.jpg", "visit1/rest.jpg")
        zf.write(PHOTOS / "005_08.jpg", "visit1/smile.jpg")
        zf.write(PHOTOS / "sjtu_p0_frontal.png", "../escape.png")  # must stay inside
        zf.writestr("visit1/notes.txt", "not an image")
        zf.writestr("__MACOSX/visit1/._rest.jpg", b"\x00\x05\x16\x07")
    shutil.copy(PHOTOS / "sample_NikonD90.JPG", src / "loose.jpg")
    return src


def _settings(src: Path, out: Path, **kw: Any) -> ConvertSettings:
    labels = {"modality": "XC", "body_part": "HEAD"}
    return ConvertSettings(inputs=[src], output=out, use_models=False, labels=labels, **kw)


def test_zip_members_convert_once(tmp_path: Path) -> None:
    src, out = _archive(tmp_path), tmp_path / "out"
    summary = run_convert(_settings(src, out))
    assert summary.exit_code == ExitCode.OK, [r.as_dict() for r in summary.results]
    rels = sorted(r.rel for r in summary.results)
    assert rels == [
        "export.zip/escape.png",
        "export.zip/visit1/rest.jpg",
        "export.zip/visit1/smile.jpg",
        "loose.jpg",
    ]
    outputs = sorted(out.rglob("*.dcm"))
    assert len(outputs) == 4
    for p in outputs:
        pydicom.dcmread(p, stop_before_pixels=True)
    extracted = sorted((out / ".orthovision" / "archives").rglob("*.*"))
    assert all(out / ".orthovision" / "archives" in p.parents for p in extracted)
    assert not (tmp_path / "escape.png").exists()
    stamps = {p: p.stat().st_mtime_ns for p in extracted}

    again = run_convert(_settings(src, out))
    assert again.exit_code == ExitCode.OK
    assert {r.status for r in again.results} == {"unchanged"}
    assert {p: p.stat().st_mtime_ns for p in extracted} == stamps  # not extracted again


def test_include_globs_select_members_and_a_broken_zip_is_reported(tmp_path: Path) -> None:
    src, out = _archive(tmp_path), tmp_path / "out"
    (src / "broken.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    summary = run_convert(_settings(src, out, include=["*.png"]))
    by_rel = {r.rel: r for r in summary.results}
    assert by_rel["export.zip/escape.png"].status == "converted"
    assert "export.zip/visit1/rest.jpg" not in by_rel and "loose.jpg" not in by_rel
    assert by_rel["broken.zip"].status == "failed"
    assert "zip" in by_rel["broken.zip"].message
    assert summary.exit_code == ExitCode.SOME_FAILED
