"""Property tests (Hypothesis) for invariants of the readers, names and UIDs."""

from __future__ import annotations

import io
import re
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from orthovision_cli.dicom.uids import uid_from
from orthovision_cli.inputs.jpeg import parse_header, strip_metadata
from orthovision_cli.inputs.pixels import orient_array
from orthovision_cli.naming import safe_component
from orthovision_cli.types import Orientation

small_images = st.tuples(st.integers(1, 9), st.integers(1, 9)).flatmap(
    lambda hw: st.lists(st.integers(0, 255), min_size=hw[0] * hw[1] * 3, max_size=hw[0] * hw[1] * 3).map(
        lambda v: np.array(v, np.uint8).reshape(hw[0], hw[1], 3)
    )
)


@given(small_images, st.integers(1, 8))
def test_exif_orientation_correction_matches_pillow(arr: np.ndarray, exif_value: int) -> None:
    # Pillow's exif_transpose is an independent reading of the EXIF Orientation semantics.
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = exif_value
    buf = io.BytesIO()
    im.save(buf, "PNG", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(buf)))
    got = orient_array(arr, Orientation.from_exif(exif_value))
    assert np.array_equal(got, expected)


@given(st.sampled_from([0, 90, 180, 270]), st.booleans())
def test_orientation_text_round_trip(rotate: int, flip: bool) -> None:
    o = Orientation(rotate, flip)
    assert Orientation.parse(str(o)) == o


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


BASE = io.BytesIO()
Image.new("RGB", (24, 16), (200, 30, 90)).save(BASE, "JPEG", quality=80)
BASE_JPEG = BASE.getvalue()
metadata_segments = st.lists(
    st.tuples(st.sampled_from([0xE1, 0xE3, 0xE5, 0xEC, 0xED, 0xFE]), st.binary(max_size=300)),
    max_size=6,
)


@given(metadata_segments, st.binary(max_size=200))
@settings(max_examples=60)
def test_strip_metadata_drops_every_metadata_segment_and_trailer(
    segments: list[tuple[int, bytes]], trailer: bytes
) -> None:
    extra = b"".join(_segment(m, b"SECRET" + p) for m, p in segments)
    data = BASE_JPEG[:2] + extra + BASE_JPEG[2:] + trailer
    stripped = strip_metadata(data)
    assert b"SECRET" not in stripped
    assert strip_metadata(stripped) == stripped  # idempotent
    info = parse_header(stripped)
    assert info.eoi_end == len(stripped)
    assert np.array_equal(
        np.asarray(Image.open(io.BytesIO(stripped))), np.asarray(Image.open(io.BytesIO(BASE_JPEG)))
    )


@given(st.text(max_size=200))
def test_safe_component_is_safe_everywhere(text: str) -> None:
    out = safe_component(text)
    assert out and len(out) <= 120
    assert not re.search(r'[<>:"/\\|?*\x00-\x1f\x7f]', out)
    assert out == out.strip(" .") or out.startswith("_")
    assert out.split(".")[0].upper() not in {"CON", "PRN", "AUX", "NUL"}


@given(st.binary(min_size=16, max_size=32), st.lists(st.text(max_size=20), min_size=1, max_size=4))
def test_uids_are_valid_and_deterministic(secret: bytes, parts: list[str]) -> None:
    uid = uid_from(secret, *parts)
    assert re.fullmatch(r"2\.25\.(0|[1-9][0-9]*)", uid) and len(uid) <= 64
    assert uid == uid_from(secret, *parts)
    assert uid != uid_from(secret + b"x", *parts)


@pytest.mark.parametrize("text", ["", "..", " . ", "CON", "con.txt", "a/b", "nul"])
def test_safe_component_edge_cases(text: str) -> None:
    out = safe_component(text)
    assert out not in ("", ".", "..") and "/" not in out


@settings(max_examples=60, deadline=None)
@given(st.permutations(list(range(12))))
def test_confirm_sees_files_in_input_order_whatever_order_they_finish(finished: list[int]) -> None:
    from orthovision_cli.batch.results import Analysed
    from orthovision_cli.batch.sharing import in_input_order

    paths = [f"/in/{i:02d}.jpg" for i in range(12)]
    stream = (Analysed(paths[i], paths[i][4:], 0, 0) for i in finished)
    assert [a.found_path for a in in_input_order(stream, paths)] == paths
