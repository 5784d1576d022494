"""What libraries say about a file goes into its report entry, not onto the terminal (issue 23):
Pillow's warnings, log records, lines C libraries print on fd 2; a passed-through JPEG whose
entropy-coded data is damaged converts byte for byte with `corrupt-entropy-data`."""

from __future__ import annotations

import logging
import os
import struct
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from hostile import jpeg, photo, segments
from PIL import Image
from testdata import orthovision, run_report

from orthovision_cli.batch import capture
from orthovision_cli.errors import CorruptEntropyData


def _bad_exif_jpeg() -> bytes:
    """A JPEG whose EXIF Make points past the end of the block: Pillow warns while reading."""
    exif = Image.Exif()
    exif[0x010F] = "TestCam" * 20
    raw = bytearray(exif.tobytes())
    entry = raw.index(struct.pack(">H", 0x010F), 14)
    struct.pack_into(">I", raw, entry + 8, 60000)
    return jpeg(photo((96, 64)), exif=bytes(raw))


def _damaged_entropy_jpeg() -> bytes:
    data = bytearray(jpeg(photo((256, 192))))
    sos = next(s for s in segments(bytes(data)) if s[0] == 0xDA)
    for k in range(sos[1] + sos[2] + 100, len(data) - 50, 700):
        data[k] ^= 0x55
    return bytes(data)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    root = tmp_path_factory.mktemp("libwarn")
    src = root / "in"
    src.mkdir()
    (src / "bad_exif.jpg").write_bytes(_bad_exif_jpeg())
    (src / "damaged.jpg").write_bytes(_damaged_entropy_jpeg())
    (src / "good.jpg").write_bytes(jpeg(photo((96, 64))))
    proc = orthovision(
        "convert",
        str(src),
        "-o",
        str(root / "out"),
        "--jobs",
        "2",
        "--no-models",
        "--on-uncertain",
        "convert",
        timeout=300,
        env={**os.environ, "CI": ""},
    )
    assert proc.returncode == 0, proc.stderr
    report = run_report(root / "out")
    return root, {f["rel"]: f for f in report["files"]}, proc.stderr


def test_library_warnings_land_in_the_files_entry_not_on_stderr(converted) -> None:  # type: ignore[no-untyped-def]
    _, files, stderr = converted
    assert "site-packages" not in stderr and "Warning" not in stderr and "Corrupt" not in stderr
    assert files["bad_exif.jpg"]["status"] == "converted"
    assert any(w.startswith("PIL: ") for w in files["bad_exif.jpg"]["warnings"]), files["bad_exif.jpg"]
    assert files["good.jpg"]["warnings"] == []


def test_damaged_entropy_data_converts_faithfully_with_a_warning(converted) -> None:  # type: ignore[no-untyped-def]
    root, files, _ = converted
    entry = files["damaged.jpg"]
    assert entry["status"] == "converted"
    assert any(w.startswith("corrupt-entropy-data: Corrupt JPEG data") for w in entry["warnings"]), entry
    ds = pydicom.dcmread(root / "out" / entry["outputs"][0])
    (frame,) = pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1)
    source = (root / "in" / "damaged.jpg").read_bytes()
    sos = next(s for s in segments(source) if s[0] == 0xDA)
    scan = source[sos[1] : source.rindex(b"\xff\xd9") + 2]
    assert frame.rstrip(b"\x00").endswith(scan)  # the damaged scan, byte for byte


def test_capture_takes_warnings_log_records_and_fd2_lines() -> None:
    capture.enable()
    try:
        with capture.messages() as notes:
            warnings.warn(CorruptEntropyData("Corrupt JPEG data: bad Huffman code"), stacklevel=1)
            logging.getLogger("tifffile").error("<TiffTag 296> invalid value offset")
            os.write(2, b"ZIPDecode: Decoding error at scanline 32\n")
            os.write(2, b"ZIPDecode: Decoding error at scanline 32\n")  # said once
        assert notes == [
            "corrupt-entropy-data: Corrupt JPEG data: bad Huffman code",
            "tifffile: <TiffTag 296> invalid value offset",
            "native: ZIPDecode: Decoding error at scanline 32",
        ]
        with capture.messages() as again:  # the next file starts empty
            pass
        assert again == []
    finally:
        if capture._scratch is not None:
            capture._scratch.close()
        capture._scratch = None
