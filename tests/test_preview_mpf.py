"""Camera JPEGs with an MPF preview: classifiers look at the preview, DICOM gets only the
primary image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import SAMPLE
from PIL import Image, ImageOps

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings
from orthovision_cli.errors import ExitCode
from orthovision_cli.inputs.preview import load_preview


def _mpo(tmp_path: Path) -> tuple[Path, Image.Image, Image.Image]:
    primary = Image.open(SAMPLE / "photos" / "005_03.jpg").convert("RGB").resize((1200, 900))
    # The preview differs on purpose (inverted), to tell which one was decoded.
    preview = ImageOps.invert(primary.resize((600, 450)))
    path = tmp_path / "camera.jpg"
    primary.save(path, format="MPO", save_all=True, append_images=[preview], quality=90)
    return path, primary, preview


def test_preview_comes_from_the_mpf_image(tmp_path: Path) -> None:
    path, primary, preview = _mpo(tmp_path)
    got = load_preview(path, 384).astype(int)
    want_preview = np.asarray(preview.resize((got.shape[1], got.shape[0]))).astype(int)
    want_primary = np.asarray(primary.resize((got.shape[1], got.shape[0]))).astype(int)
    assert np.abs(got - want_preview).mean() < 8
    assert np.abs(got - want_primary).mean() > 40
    # A preview smaller than asked for is not used: the primary image is decoded instead.
    big = load_preview(path, 800).astype(int)
    assert np.abs(big - np.asarray(primary.resize((big.shape[1], big.shape[0]))).astype(int)).mean() < 8


def test_dicom_holds_the_primary_image_only(tmp_path: Path) -> None:
    path, primary, _ = _mpo(tmp_path)
    out = tmp_path / "out"
    summary = run_convert(
        ConvertSettings(
            inputs=[path], output=out, use_models=False, labels={"modality": "XC", "body_part": "HEAD"}
        )
    )
    assert summary.exit_code == ExitCode.OK
    ds = pydicom.dcmread(out / summary.results[0].outputs[0])
    assert (ds.Rows, ds.Columns) == (900, 1200)
    assert np.abs(ds.pixel_array.astype(int) - np.asarray(primary).astype(int)).mean() < 3
    frags = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    assert frags[0].rstrip(b"\x00").count(b"\xff\xd8") == 1  # no second (preview) image


def _broken_preview(tmp_path: Path, how: str) -> Path:
    """A camera JPEG whose MPF preview (the image APP2 points at) is broken (issue 23)."""
    import struct

    path, _, _ = _mpo(tmp_path)
    data = bytearray(path.read_bytes())
    start = data.index(b"\xff\xd8", data.index(b"\xff\xd9"))  # the preview, after the primary's EOI
    if how == "forged-size":  # its SOF claims 60000x60000: Pillow's bomb guard fired
        sof = data.index(b"\xff\xc0", start)
        struct.pack_into(">HH", data, sof + 5, 60000, 60000)
    else:  # its first DHT's length corrupted: Pillow's reader runs into the table data
        dht = data.index(b"\xff\xc4", start)
        data[dht + 2] = 0x9B
        data[start + 164] = 0xB1  # and a byte of its second quantisation table
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("how", ["forged-size", "broken-tables"])
def test_a_broken_preview_is_ignored_and_the_picture_classified(tmp_path: Path, how: str) -> None:
    path = _broken_preview(tmp_path, how)
    got = load_preview(path, 384)  # from the picture itself
    assert got.shape[1] == 384 or got.shape[0] == 384
    summary = run_convert(
        ConvertSettings(inputs=[path], output=tmp_path / "out", jobs=1, on_uncertain="convert")
    )
    (res,) = summary.results
    assert res.status == "converted", res.as_dict()
    assert res.labels["modality"] is not None  # the classifier looked (at the picture)
    ds = pydicom.dcmread(tmp_path / "out" / res.outputs[0])
    assert (ds.Rows, ds.Columns) == (900, 1200)
