"""Hostile inputs (issue 16): each gets one documented reason, in one line, and never costs the
batch. The files are built by tests/hostile.py from real samples, as the reproducers were."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLE, dciodvfy, require_tool
from hostile import HOSTILE, jpeg, make_hostile, photo, segments, tiff, tiff_ifd_loop_self
from testdata import run_report

from orthovision_cli.errors import CorruptImage, ImageTooLarge
from orthovision_cli.inputs import tiff_structure
from orthovision_cli.inputs.reader import probe

TIMEOUT = 120  # the whole batch; a hang is a failure, not a stuck CI job


def _orthovision(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orthovision_cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "CI": ""},
    )


@pytest.fixture(scope="module")
def converted(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, dict[str, object]], subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("hostile")
    make_hostile(root / "in")
    (root / "in" / "good.jpg").write_bytes(jpeg(photo((96, 64))))
    proc = _orthovision(
        "convert",
        str(root / "in"),
        "-o",
        str(root / "out"),
        "--jobs",
        "2",
        "--on-uncertain",
        "convert",
        "--no-models",
    )
    report = run_report(root / "out")
    return root, {Path(f["input"]).name: f for f in report["files"]}, proc


def test_every_hostile_file_gets_its_documented_reason(converted) -> None:  # type: ignore[no-untyped-def]
    _, files, proc = converted
    assert proc.returncode == 4, proc.stderr  # some failed, the others converted
    assert "Traceback" not in proc.stderr + proc.stdout
    for name, (_, status, reason) in HOSTILE.items():
        got = files[name]
        assert (got["status"], got["reason"]) == (status, reason), got
        assert "\n" not in str(got["message"])
    assert files["good.jpg"]["status"] == "converted"


def test_a_failed_input_leaves_no_output(converted) -> None:  # type: ignore[no-untyped-def]
    root, files, _ = converted
    written = {p.relative_to(root / "out").as_posix() for p in (root / "out").rglob("*.dcm")}
    expected = {o for f in files.values() if f["status"] == "converted" for o in f["outputs"]}
    assert written == expected
    # Page 1 of a two-page TIFF whose page 2 cannot be stored is not committed on its own.
    assert not files["tiff_2pages_page2_rows_70000.tif"]["outputs"]
    assert not any("tiff_2pages" in w for w in written)


def test_the_recoded_progressive_jpeg_decodes(converted) -> None:  # type: ignore[no-untyped-def]
    root, files, _ = converted
    out = root / "out" / str(files["jpeg_progressive_zero_length_COM_after_SOI.jpg"]["outputs"][0])
    errors, _ = dciodvfy(out)
    assert not errors
    run = subprocess.run(
        [require_tool("dcmj2pnm"), str(out), str(root / "p.pnm")], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr


def test_classify_reports_each_bad_file_and_goes_on(tmp_path: Path) -> None:
    make_hostile(tmp_path)
    shutil.copy(SAMPLE / "photos" / "005_08.jpg", tmp_path / "good.jpg")
    proc = _orthovision("classify", str(tmp_path), "--format", "json")
    assert "Traceback" not in proc.stderr
    rows = {Path(r["path"]).name: r for r in json.loads(proc.stdout)["images"]}
    assert rows["good.jpg"]["error"] is None
    assert rows["good.jpg"]["labels"]["modality"]["value"] == "XC"
    assert str(rows["classify_crash_sof_30000x30000.jpg"]["error"]).startswith("image-too-large:")
    assert str(rows["tiff_ifd_next_points_to_itself.tif"]["error"]).startswith("corrupt-data:")
    assert proc.returncode == 4


def test_an_ifd_loop_is_found_without_reading_pages(tmp_path: Path) -> None:
    path = tmp_path / "loop.tif"
    path.write_bytes(tiff_ifd_loop_self())
    with pytest.raises(CorruptImage, match="loops"):
        probe(path)


def test_a_page_chain_longer_than_the_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    import tifffile

    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as w:
        for _ in range(5):
            w.write(np.zeros((8, 8), np.uint8))
    assert len(probe(path).pages) == 5
    monkeypatch.setattr(tiff_structure, "MAX_PAGES", 4)
    with pytest.raises(CorruptImage, match="more than 4 pages"):
        probe(path)


def test_a_forged_size_names_max_pixels_first(tmp_path: Path) -> None:
    from hostile import set_sof_size

    path = tmp_path / "forged.jpg"
    path.write_bytes(set_sof_size(jpeg(photo()), 20000, 20000))
    with pytest.raises(CorruptImage, match="cannot hold them"):
        probe(path)  # 400 MP is under the default limit: the data bound refuses it
    with pytest.raises(ImageTooLarge, match="max-pixels"):
        probe(path, max_pixels=1_000_000)


def test_a_jpeg_without_its_quantisation_table_is_refused(tmp_path: Path) -> None:
    data = jpeg(photo())
    dqt = [(pos, n) for marker, pos, n in segments(data) if marker == 0xDB]
    pos, n = dqt[-1]
    path = tmp_path / "nodqt.jpg"
    path.write_bytes(data[:pos] + data[pos + n :])
    with pytest.raises(CorruptImage, match="quantisation table"):
        probe(path)


def test_uncompressed_strips_shorter_than_the_image_are_truncated(tmp_path: Path) -> None:
    import numpy as np

    data = bytearray(tiff(np.zeros((64, 64), np.uint8)))
    (ifd,) = struct.unpack("<I", data[4:8])
    path = tmp_path / "short.tif"
    # StripByteCounts claims 100 bytes of the 4096 the image needs.
    from hostile import ifd_entries, set_long

    set_long(data, ifd_entries(bytes(data), ifd)[279], 100)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptImage, match="truncated"):
        probe(path)
