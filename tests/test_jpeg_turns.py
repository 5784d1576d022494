"""Lossless turns and flips: libjpeg-turbo's transform against the real `jpegtran -perfect`.

Inputs are crops of a real photograph (sample_data, see its NOTICE) encoded by the real
`cjpeg` in every chroma subsampling a camera or scanner writes; each is turned for every EXIF
orientation by orthovision and by `jpegtran`, and the decoded pixels must be identical.
"""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import require_tool
from make_inputs import SECRETS, add_metadata, exif_block, face
from PIL import Image

from orthovision_cli.inputs import jpeg_transform, turbojpeg
from orthovision_cli.inputs.jpeg import parse_header
from orthovision_cli.inputs.reader import load_pixels, probe
from orthovision_cli.types import Orientation

# jpegtran's arguments for each EXIF orientation's correction (its own documentation's table).
JPEGTRAN = {
    1: [],
    2: ["-flip", "horizontal"],
    3: ["-rotate", "180"],
    4: ["-flip", "vertical"],
    5: ["-transpose"],
    6: ["-rotate", "90"],
    7: ["-transverse"],
    8: ["-rotate", "270"],
}
# cjpeg sampling factors (luma HxV) for each subsampling; None: greyscale.
SAMPLING = {"444": "1x1", "422": "2x1", "420": "2x2", "440": "1x2", "grey": None}
# Whole MCUs for every subsampling (MCU up to 16x16).
PERFECT_SIZE = (96, 64)


def _cjpeg(tmp: Path, size: tuple[int, int], sub: str) -> Path:
    cjpeg = require_tool("cjpeg")
    src = tmp / f"src-{sub}-{size[0]}x{size[1]}.ppm"
    im = face(size)
    (im.convert("L") if SAMPLING[sub] is None else im).save(src)
    args = ["-grayscale"] if SAMPLING[sub] is None else ["-sample", f"{SAMPLING[sub]},1x1,1x1"]
    out = src.with_suffix(".jpg")
    jpeg = subprocess.run(
        [cjpeg, "-quality", "90", *args, str(src)], check=True, capture_output=True, timeout=60
    ).stdout
    # Camera-style metadata around the image: Exif with GPS/maker note, XMP, IPTC, comment.
    jfif_end = 2 + int.from_bytes(jpeg[4:6], "big") + 2
    exif = b"\xff\xe1" + (len(exif_block(6)) + 8).to_bytes(2, "big") + b"Exif\x00\x00" + exif_block(6)
    out.write_bytes(add_metadata(jpeg[:jfif_end] + exif + jpeg[jfif_end:]))
    return out


def _jpegtran(path: Path, exif: int) -> subprocess.CompletedProcess[bytes]:
    exe = require_tool("jpegtran")
    return subprocess.run(
        [exe, "-perfect", "-copy", "none", *JPEGTRAN[exif], str(path)], capture_output=True, timeout=60
    )


def _pixels(jpeg: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg)) as im:
        return np.asarray(im)


@pytest.fixture(params=[True, False], ids=["libturbojpeg", "jpeglib-fallback"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param:
        if not turbojpeg.available():
            pytest.fail("libturbojpeg is not installed (Debian: libturbojpeg0)")
        return "turbo"
    monkeypatch.setattr(turbojpeg, "available", lambda: False)
    return "jpeglib"


@pytest.mark.external
@pytest.mark.parametrize("sub", list(SAMPLING))
@pytest.mark.parametrize("exif", range(1, 9))
def test_turn_matches_jpegtran_perfect(tmp_path: Path, sub: str, exif: int, engine: str) -> None:
    path = _cjpeg(tmp_path, PERFECT_SIZE, sub)
    info = parse_header(path.read_bytes())
    orientation = Orientation.from_exif(exif)
    assert jpeg_transform.is_perfect(info, orientation)
    ours = jpeg_transform.transform(path, info, orientation)
    assert ours is not None
    ref = _jpegtran(path, exif)
    assert ref.returncode == 0, ref.stderr
    a, b = _pixels(ours), _pixels(ref.stdout)
    assert a.shape == b.shape
    assert np.array_equal(a, b)
    if exif >= 5:
        assert a.shape[:2] == (PERFECT_SIZE[0], PERFECT_SIZE[1])  # rows = the source's width
    # The turned stream is the primary image only, without any metadata segment.
    assert b"Exif\x00\x00" not in ours
    for secret in SECRETS:
        assert secret not in ours


@pytest.mark.external
@pytest.mark.parametrize("sub", list(SAMPLING))
@pytest.mark.parametrize("exif", range(2, 9))
def test_imperfect_sizes_agree_with_jpegtran(tmp_path: Path, sub: str, exif: int) -> None:
    """Where jpegtran -perfect refuses (partial edge MCUs), we refuse too and decode instead;
    where it accepts, so do we."""
    path = _cjpeg(tmp_path, (101, 75), sub)
    info = parse_header(path.read_bytes())
    orientation = Orientation.from_exif(exif)
    ref = _jpegtran(path, exif)
    ours = jpeg_transform.transform(path, info, orientation)
    assert (ours is not None) == (ref.returncode == 0), ref.stderr
    if ours is not None:
        assert np.array_equal(_pixels(ours), _pixels(ref.stdout))


def test_imperfect_turn_falls_back_to_lossless_decode(tmp_path: Path) -> None:
    buf = io.BytesIO()
    src = face((101, 75))
    src.save(buf, "JPEG", quality=90, exif=exif_block(6))
    path = tmp_path / "odd.jpg"
    path.write_bytes(buf.getvalue())
    pr = probe(path)
    assert pr.exif.orientation == 6
    (px,) = load_pixels(pr, Orientation.from_exif(6), photo=True)
    assert (px.rows, px.columns) == (101, 75)
    assert "not exact" in px.derivation[0]
    decoded = _pixels(path.read_bytes())
    arr = px.pixels.array[0]  # type: ignore[union-attr]
    assert np.array_equal(arr, np.rot90(decoded, k=-1))


def test_icc_profile_kept_and_mpf_preview_dropped(tmp_path: Path) -> None:
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    buf = io.BytesIO()
    face(PERFECT_SIZE).save(buf, "JPEG", quality=90, icc_profile=icc, exif=exif_block(8))
    preview = io.BytesIO()
    face((32, 32)).save(preview, "JPEG", exif=exif_block(1))
    path = tmp_path / "icc.jpg"
    path.write_bytes(buf.getvalue() + preview.getvalue())
    info = parse_header(path.read_bytes())
    out = jpeg_transform.transform(path, info, Orientation.from_exif(8))
    assert out is not None
    assert out.count(b"\xff\xd8") == 1 and out.endswith(b"\xff\xd9")
    assert b"Exif" not in out and b"SECRET-ARTIST" not in out
    with Image.open(io.BytesIO(out)) as im:
        assert im.info.get("icc_profile") == icc
        assert im.size == (PERFECT_SIZE[1], PERFECT_SIZE[0])


def test_damaged_stream_is_a_corrupt_image(tmp_path: Path) -> None:
    from orthovision_cli.errors import CorruptImage

    buf = io.BytesIO()
    face(PERFECT_SIZE).save(buf, "JPEG", quality=90)
    data = bytearray(buf.getvalue())
    dht = data.index(b"\xff\xc4")
    data[dht + 5] = 255  # 255 one-bit Huffman codes: libjpeg rejects the table (fatal)
    path = tmp_path / "bad.jpg"
    path.write_bytes(bytes(data))
    info = parse_header(bytes(data))
    with pytest.raises(CorruptImage, match="libjpeg"):
        jpeg_transform.transform(path, info, Orientation(90))


@pytest.mark.external
def test_converted_dicom_holds_the_jpegtran_pixels(tmp_path: Path) -> None:
    from orthovision_cli.batch.runner import run_convert
    from orthovision_cli.config import ConvertSettings
    from orthovision_cli.errors import ExitCode

    src = tmp_path / "in"
    src.mkdir()
    path = _cjpeg(tmp_path, PERFECT_SIZE, "420")  # Exif Orientation 6
    (src / "p.jpg").write_bytes(path.read_bytes())
    out = tmp_path / "out"
    settings = ConvertSettings(
        inputs=[src], output=out, use_models=False, jobs=1, labels={"modality": "XC", "body_part": "HEAD"}
    )
    assert run_convert(settings).exit_code == ExitCode.OK
    (dcm,) = [p for p in out.rglob("*.dcm")]
    ds = pydicom.dcmread(dcm)
    (frag,) = pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1)
    assert np.array_equal(_pixels(frag), _pixels(_jpegtran(path, 6).stdout))
    for secret in SECRETS:
        assert secret not in dcm.read_bytes()
