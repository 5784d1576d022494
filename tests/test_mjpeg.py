"""Motion-JPEG frames (intraoral and USB cameras save them as .jpg) leave out the Huffman tables:
the standard tables of ITU-T T.81 K.3 are implied. They are converted, with the tables put into
the DICOM's stream (the coded data unchanged, so the pixels are exactly the camera's), never
refused. A stream without tables that the standard ones cannot decode is still refused."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import dciodvfy, require_tool
from hostile import segments
from PIL import Image
from pydicom.encaps import generate_fragments
from testdata import DATA

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings
from orthovision_cli.errors import CorruptImage
from orthovision_cli.inputs.jpeg import STD_DHT, parse_header
from orthovision_cli.types import FileStatus

PHOTO = sorted((DATA / "photos/faces_london/rest").glob("*.jpg"))[0]


def spans(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, offset, end) of each segment before the first scan, the SOS included."""
    return [(marker, pos, pos + n) for marker, pos, n in segments(data)]


def huffman_tables(data: bytes) -> dict[tuple[int, int], tuple[bytes, bytes]]:
    """{(class, id): (counts, values)} of every DHT before the first scan."""
    tables = {}
    for marker, start, end in spans(data):
        p = start + 4
        while marker == 0xC4 and p < end:
            counts = data[p + 1 : p + 17]
            n = sum(counts)
            tables[(data[p] >> 4, data[p] & 15)] = (counts, data[p + 17 : p + 17 + n])
            p += 17 + n
    return tables


def encoded(progressive: bool = False) -> bytes:
    """A real photograph as libjpeg encodes it without optimised tables: the typical tables."""
    with Image.open(PHOTO) as im:
        small = im.convert("RGB").resize((320, 240))
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=90, optimize=False, subsampling=2, progressive=progressive)
    return buf.getvalue()


def as_motion_jpeg(data: bytes) -> bytes:
    """The stream as a Motion-JPEG frame: an AVI1 APP0 instead of JFIF, and no DHT."""
    out = bytearray(data[:2]) + b"\xff\xe0\x00\x10AVI1" + bytes(10)
    for marker, start, end in spans(data):
        if marker not in (0xC4, 0xE0):
            out += data[start:end]
    return bytes(out + data[spans(data)[-1][2] :])


def test_the_standard_tables_are_those_of_t81_k3() -> None:
    # libjpeg writes the K.3 tables when asked for no optimised tables: an independent copy.
    assert huffman_tables(encoded()) == huffman_tables(b"\xff\xd8" + STD_DHT + b"\xff\xda\x00\x02")


@pytest.mark.external
def test_a_motion_jpeg_frame_is_converted_with_its_implied_tables(tmp_path: Path) -> None:
    original = encoded()
    frame = as_motion_jpeg(original)
    assert b"\xff\xc4" not in frame[: frame.index(b"\xff\xda")]
    src = tmp_path / "in"
    src.mkdir()
    (src / "snapshot.jpg").write_bytes(frame)
    settings = ConvertSettings(
        inputs=[src],
        output=tmp_path / "out",
        use_models=False,
        labels={"modality": "XC", "body_part": "HEAD"},
        jobs=1,
    )
    summary = run_convert(settings)
    (res,) = summary.results
    assert res.status == FileStatus.CONVERTED, res.message
    out = tmp_path / "out" / res.outputs[0]
    ds = pydicom.dcmread(out)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert ds.ImageType[0] == "ORIGINAL"  # the pixels are the camera's own
    (fragment,) = [f for f in generate_fragments(ds.PixelData) if f]
    stream = fragment.rstrip(b"\x00") if not fragment.endswith(b"\xff\xd9") else fragment
    assert huffman_tables(stream) == huffman_tables(original)
    # The coded data is the camera's, byte for byte.
    scan = original[spans(original)[-1][1] :]
    assert stream.endswith(scan)
    with Image.open(io.BytesIO(stream)) as a, Image.open(io.BytesIO(original)) as b:
        assert np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))
    errors, warnings = dciodvfy(out)
    assert errors == [] and warnings == [], (errors, warnings)
    dcmj2pnm = require_tool("dcmj2pnm")
    proc = subprocess.run(
        [dcmj2pnm, str(out), str(tmp_path / "x.pnm")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


def test_tables_beyond_the_standard_ones_are_still_refused() -> None:
    frame = bytearray(as_motion_jpeg(encoded()))
    sos = frame.index(b"\xff\xda")
    frame[sos + 6] = 0x22  # the first component's scan uses DC/AC table 2: none is implied
    with pytest.raises(CorruptImage, match="Huffman table DC 2 is not defined"):
        parse_header(bytes(frame))


def test_a_progressive_stream_without_tables_is_refused() -> None:
    frame = as_motion_jpeg(encoded(progressive=True))
    with pytest.raises(CorruptImage, match="Huffman table"):
        parse_header(frame)
