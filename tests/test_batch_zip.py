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
        "export.zip/_parent_/escape.png",
        "export.zip/visit1/rest.jpg",
        "export.zip/visit1/smile.jpg",
        "loose.jpg",
    ]
    outputs = sorted(out.rglob("*.dcm"))
    assert len(outputs) == 4
    for p in outputs:
        pydicom.dcmread(p, stop_before_pixels=True)
    assert not (tmp_path / "escape.png").exists() and not (src.parent / "escape.png").exists()
    assert not (out / ".orthovision" / "archives").exists()  # the extracted members are removed

    again = run_convert(_settings(src, out))  # extracted again, with their dates: unchanged
    assert again.exit_code == ExitCode.OK
    assert {r.status for r in again.results} == {"unchanged"}
    assert not (out / ".orthovision" / "archives").exists()


def test_include_globs_select_members_and_a_broken_zip_is_reported(tmp_path: Path) -> None:
    src, out = _archive(tmp_path), tmp_path / "out"
    (src / "broken.zip").write_bytes(b"PK\x03\x04 this is not really a zip")
    summary = run_convert(_settings(src, out, include=["*.png"]))
    by_rel = {r.rel: r for r in summary.results}
    assert by_rel["export.zip/_parent_/escape.png"].status == "converted"
    assert "export.zip/visit1/rest.jpg" not in by_rel and "loose.jpg" not in by_rel
    assert by_rel["broken.zip"].status == "failed"
    assert "zip" in by_rel["broken.zip"].message
    assert summary.exit_code == ExitCode.SOME_FAILED


# ---------------------------------------------------------------- zips that lie (issue 23)


def _zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)  # the same name twice is allowed (zipfile warns)
    return path


def _by_rel(summary: Any) -> dict[str, Any]:
    return {r.rel: r for r in summary.results}


def test_two_members_of_one_name_both_convert(tmp_path: Path) -> None:
    a, b = (PHOTOS / "005_03.jpg").read_bytes(), (PHOTOS / "005_08.jpg").read_bytes()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": that is the point
        _zip(tmp_path / "in" / "x.zip", [("p/img.jpg", a), ("p/img.jpg", b), ("p/IMG.JPG", a)])
    out = tmp_path / "out"
    summary = run_convert(_settings(tmp_path / "in", out))
    got = _by_rel(summary)
    # Sorted by name ("IMG" before "img"); the two "img.jpg" in the archive's order.
    assert set(got) == {"x.zip/p/IMG.JPG", "x.zip/p/img~2.jpg", "x.zip/p/img~3.jpg"}, got
    assert got["x.zip/p/IMG.JPG"].status == got["x.zip/p/img~3.jpg"].status == "converted"
    assert got["x.zip/p/IMG.JPG"].content_hash != got["x.zip/p/img~3.jpg"].content_hash
    second = got["x.zip/p/img~2.jpg"]  # the first one's content again: a duplicate of *it*
    assert (second.status, second.reason) == ("unchanged", "duplicate")
    assert "IMG.JPG" in second.message and "img~2" not in second.message
    assert len(list(out.rglob("*.dcm"))) == 2


def test_members_that_climb_out_stay_inside_and_distinct(tmp_path: Path) -> None:
    a, b = (PHOTOS / "005_03.jpg").read_bytes(), (PHOTOS / "005_08.jpg").read_bytes()
    _zip(tmp_path / "in" / "deep" / "x.zip", [("../../x.jpg", a), ("x.jpg", b), ("/abs/y.jpg", a)])
    summary = run_convert(_settings(tmp_path / "in", tmp_path / "out"))
    got = _by_rel(summary)
    assert set(got) == {
        "deep/x.zip/_parent_/_parent_/x.jpg",
        "deep/x.zip/x.jpg",
        "deep/x.zip/_root_/abs/y.jpg",
    }
    assert got["deep/x.zip/x.jpg"].status == "converted"
    assert got["deep/x.zip/_parent_/_parent_/x.jpg"].status == "converted"
    assert not (tmp_path / "x.jpg").exists() and not (tmp_path / "in" / "x.jpg").exists()
    assert not Path("/abs/y.jpg").exists()


def test_a_member_named_with_250_bytes_converts(tmp_path: Path) -> None:
    name = "visit/" + "n" * 246 + ".jpg"
    assert len(name.encode()) - len("visit/") == 250
    _zip(tmp_path / "in" / "x.zip", [(name, (PHOTOS / "005_03.jpg").read_bytes())])
    summary = run_convert(_settings(tmp_path / "in", tmp_path / "out"))
    (res,) = summary.results
    assert (res.rel, res.status) == (f"x.zip/{name}", "converted"), res.as_dict()
    assert res.outputs[0].endswith(".dcm")


def _bomb(path: Path, members: int = 3, size: int = 64 << 20) -> Path:
    """Members of zeros named .jpg: ~1000:1, as the 11 MB zip of 3 x 3.5 GiB was."""
    zero = bytes(1 << 20)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(members):
            with zf.open(f"bomb{i}.jpg", "w") as dst:
                for _ in range(size >> 20):
                    dst.write(zero)
    return path


def test_a_zip_bomb_is_refused_before_extraction_and_nothing_stays(tmp_path: Path) -> None:
    import time

    _bomb(tmp_path / "in" / "bomb.zip")
    shutil.copy(PHOTOS / "005_03.jpg", tmp_path / "in" / "good.jpg")
    out = tmp_path / "out"
    started = time.monotonic()
    summary = run_convert(_settings(tmp_path / "in", out))
    assert time.monotonic() - started < 60
    got = _by_rel(summary)
    assert got["good.jpg"].status == "converted"
    for i in range(3):
        res = got[f"bomb.zip/bomb{i}.jpg"]
        assert (res.status, res.reason) == ("failed", "archive-refused")
        assert "--zip-max-ratio" in res.message
    assert summary.exit_code == ExitCode.SOME_FAILED
    assert not (out / ".orthovision" / "archives").exists()
    assert sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) < 20 << 20


def test_archive_bounds_refuse_the_whole_zip_and_options_raise_them(tmp_path: Path) -> None:
    photo = (PHOTOS / "005_03.jpg").read_bytes()
    _zip(tmp_path / "in" / "x.zip", [(f"m{i}.jpg", photo) for i in range(3)])
    out = tmp_path / "out"
    small = run_convert(_settings(tmp_path / "in", out, zip_max_size=2 * len(photo)))
    (res,) = small.results
    assert (res.rel, res.status, res.reason) == ("x.zip", "failed", "archive-refused")
    assert "--zip-max-size" in res.message
    few = run_convert(_settings(tmp_path / "in", out, zip_max_members=2))
    assert "--zip-max-members" in few.results[0].message
    raised = run_convert(_settings(tmp_path / "in", out, zip_max_members=3, zip_max_size="1G"))
    statuses = sorted(str(r.status) for r in raised.results)  # one photo three times
    assert statuses == ["converted", "unchanged", "unchanged"], [r.as_dict() for r in raised.results]
    _bomb(tmp_path / "in2" / "b.zip", members=1, size=2 << 20)
    allowed = run_convert(_settings(tmp_path / "in2", tmp_path / "out2", zip_max_ratio=100_000))
    assert allowed.results[0].reason != "archive-refused"  # extracted, then not an image
    assert not (tmp_path / "out2" / ".orthovision" / "archives").exists()


def test_a_member_waiting_for_review_stays_extracted_the_others_go(tmp_path: Path) -> None:
    _zip(tmp_path / "in" / "x.zip", [("a.jpg", (PHOTOS / "005_03.jpg").read_bytes())])
    shutil.copy(PHOTOS / "005_08.jpg", tmp_path / "in" / "loose.jpg")
    out = tmp_path / "out"
    # min_confidence 1.0: nothing is sure enough, everything waits for a person.
    summary = run_convert(ConvertSettings(inputs=[tmp_path / "in"], output=out, jobs=1, min_confidence=1.0))
    member = _by_rel(summary)["x.zip/a.jpg"]
    assert member.status == "review"
    assert Path(member.path).is_file()  # the review page shows it
    assert [p for p in (out / ".orthovision" / "archives").rglob("*") if p.is_file()] == [Path(member.path)]
