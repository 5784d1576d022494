"""Every input kind converts to DICOM that validates, reads back and keeps its pixels.

One batch converts all kinds (labels from a CSV manifest); each test then checks one property
of every output, with the real dciodvfy, DCMTK and pydicom.
"""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
from conftest import dciodvfy, require_tool
from make_inputs import SECRETS, Kind, make_all
from PIL import Image
from pydicom.uid import UID
from testdata import run_report

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings
from orthovision_cli.errors import ExitCode
from orthovision_cli.inputs.pixels import orient_array
from orthovision_cli.types import Orientation

KINDS: list[Kind] = []


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Kind, list[Path]]]:
    src = tmp_path_factory.mktemp("inputs")
    out = tmp_path_factory.mktemp("out")
    kinds = make_all(src)
    manifest = src.parent / "manifest.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "PatientID", "PatientName", "Modality", "BodyPart"])
        for k in kinds:
            w.writerow([k.path.name, "PAT-1", "Test^Patient", k.modality, k.body_part])
    settings = ConvertSettings(inputs=[src], output=out, manifest=manifest, use_models=False, jobs=2)
    summary = run_convert(settings)
    assert summary.exit_code == ExitCode.OK, [r.as_dict() for r in summary.results if r.status != "converted"]
    by_path = {Path(r.path).name: r for r in summary.results}
    return {k.name: (k, [out / o for o in by_path[k.path.name].outputs]) for k in kinds}


def _kind_names() -> list[str]:
    return [k.name for k in make_all(Path("/tmp/orthovision-kind-names"))]


NAMES = _kind_names()


@pytest.mark.external
@pytest.mark.parametrize("name", NAMES)
def test_dciodvfy_clean(converted: dict, name: str) -> None:
    _, outputs = converted[name]
    assert outputs
    for out in outputs:
        errors, warnings = dciodvfy(out)
        assert errors == [], errors
        assert warnings == [], warnings


@pytest.mark.external
@pytest.mark.parametrize("name", NAMES)
def test_dcmtk_reads_and_decodes(converted: dict, name: str, tmp_path: Path) -> None:
    dcmdump = require_tool("dcmdump")
    dcmj2pnm = require_tool("dcmj2pnm")
    _, outputs = converted[name]
    for out in outputs:
        proc = subprocess.run([dcmdump, "-E", str(out)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        target = tmp_path / "frame.pgm"
        proc = subprocess.run([dcmj2pnm, "+Fa", str(out), str(target)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert list(tmp_path.glob("frame*")), "DCMTK wrote no image"


def _source_pixels(kind: Kind) -> list[np.ndarray]:
    """Reference decode of the source with a different library than the converter uses."""
    if kind.fmt == "tiff":
        with tifffile.TiffFile(kind.path) as tif:
            arrays = [p.asarray() for p in tif.pages]
        return arrays
    if kind.fmt == "jpeg2000":
        import imagecodecs

        return [imagecodecs.jpeg2k_decode(kind.path.read_bytes())]
    im = Image.open(kind.path)
    if kind.fmt == "png" and im.mode.startswith("I"):
        return [np.asarray(im).astype(np.uint16)]
    if im.mode == "CMYK":
        return [np.asarray(im.convert("RGB"))]
    return [np.asarray(im)]


@pytest.mark.parametrize("name", NAMES)
def test_pixels_round_trip(converted: dict, name: str) -> None:
    kind, outputs = converted[name]
    sources = _source_pixels(kind)
    ds = pydicom.dcmread(outputs[0])
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1))
    if frames == 1:
        arr = arr[None]
    assert frames == len(sources) == kind.pages
    correction = Orientation.parse(kind.orientation) if kind.orientation else Orientation()
    for i, src in enumerate(sources):
        expected = orient_array(src if src.ndim == 3 else src[:, :, None], correction)
        got = arr[i] if arr[i].ndim == 3 else arr[i][:, :, None]
        # pydicom returns JPEG YCbCr data converted to RGB, as a viewer shows it.
        assert got.shape == expected.shape
        diff = np.abs(got.astype(np.int32) - expected.astype(np.int32))
        if kind.lossless:
            assert diff.max() == 0
        else:
            # Decoder rounding (IDCT, upsampling, colour conversion) only: never a re-encode.
            assert diff.max() <= 6 and diff.mean() < 1.0, (diff.max(), diff.mean())


def _strip_oracle(data: bytes) -> bytes:
    """The source minus APP1, APP13 and COM segments, walked independently of the converter."""
    out = bytearray(data[:2])
    pos = 2
    while True:
        marker = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            end = data.index(b"\xff\xd9", pos) + 2  # baseline: the first EOI ends the image
            out += data[pos:end]
            return bytes(out)
        if marker not in (0xE1, 0xED, 0xFE):
            out += data[pos : pos + 2 + length]
        pos += 2 + length


def _fragment(path: Path) -> bytes:
    ds = pydicom.dcmread(path)
    frames = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    return frames[0]


@pytest.mark.parametrize(
    "name", ["jpeg-baseline-exif", "jpeg-444", "jpeg-gray", "jpeg-rgb-app14", "jpeg-appended-preview"]
)
def test_fragment_is_source_minus_metadata(converted: dict, name: str) -> None:
    kind, outputs = converted[name]
    frag = _fragment(outputs[0])
    expected = _strip_oracle(kind.path.read_bytes())
    assert frag.rstrip(b"\x00") == expected.rstrip(b"\x00")
    ds = pydicom.dcmread(outputs[0])
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert ds.LossyImageCompression == "01"
    assert ds.LossyImageCompressionMethod == "ISO_10918_1"
    assert float(ds.LossyImageCompressionRatio) > 1


def test_real_camera_jpeg_passes_through(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[1] / "sample_data" / "photos" / "sample_NikonD90.JPG"
    out = tmp_path / "out"
    summary = run_convert(
        ConvertSettings(
            inputs=[src], output=out, use_models=False, labels={"modality": "XC", "body_part": "MOUTH"}
        )
    )
    assert summary.exit_code == ExitCode.OK
    dcm = out / summary.results[0].outputs[0]
    assert _fragment(dcm).rstrip(b"\x00") == _strip_oracle(src.read_bytes())
    ds = pydicom.dcmread(dcm)
    assert ds.Manufacturer == "NIKON CORPORATION"
    assert ds.ManufacturerModelName == "NIKON D90"
    assert ds.AcquisitionDateTime.startswith("20221118171329")
    assert ds.ContentDate == "20221118"
    assert b"Exif\x00\x00" not in dcm.read_bytes()


def test_progressive_becomes_baseline_with_same_coefficients(converted: dict) -> None:
    import jpeglib

    kind, outputs = converted["jpeg-progressive"]
    frag = _fragment(outputs[0])
    assert b"\xff\xc2" not in frag[: frag.index(b"\xff\xda")]
    assert b"\xff\xc0" in frag[: frag.index(b"\xff\xda")]
    tmp = outputs[0].with_suffix(".frag.jpg")
    tmp.write_bytes(frag)
    a, b = jpeglib.read_dct(str(kind.path)), jpeglib.read_dct(str(tmp))
    for comp in ("Y", "Cb", "Cr"):
        assert np.array_equal(getattr(a, comp), getattr(b, comp))
    tmp.unlink()
    ds = pydicom.dcmread(outputs[0])
    assert "DERIVED" in ds.ImageType
    assert "baseline" in ds.DerivationDescription


@pytest.mark.parametrize("name", NAMES)
def test_no_metadata_leaks(converted: dict, name: str) -> None:
    _, outputs = converted[name]
    for out in outputs:
        data = out.read_bytes()
        assert b"Exif\x00\x00" not in data
        for secret in SECRETS:
            assert secret not in data, secret


@pytest.mark.parametrize("name", NAMES)
def test_transfer_syntax_and_photometric(converted: dict, name: str) -> None:
    kind, outputs = converted[name]
    ds = pydicom.dcmread(outputs[0])
    ts = UID(ds.file_meta.TransferSyntaxUID)
    assert not ts.is_retired and ts.is_transfer_syntax and not ts.is_private
    assert ds.PhotometricInterpretation == kind.expect_photometric
    if ts.is_compressed:
        frag = _fragment(outputs[0])
        sof = next(i for i in range(len(frag)) if frag[i] == 0xFF and frag[i + 1] in (0xC0, 0xC1))
        ncomp = frag[sof + 9]
        assert ncomp == ds.SamplesPerPixel
        assert (ncomp == 1) == (ds.PhotometricInterpretation == "MONOCHROME2")


def test_exif_orientation_turns_pixels_losslessly(converted: dict) -> None:
    _, outputs = converted["jpeg-exif-rotate-perfect"]
    ds = pydicom.dcmread(outputs[0])
    assert (ds.Rows, ds.Columns) == (320, 240)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"  # still the JPEG: DCT domain
    assert "DERIVED" in ds.ImageType and "DCT domain" in ds.DerivationDescription
    _kind, outputs = converted["jpeg-exif-rotate-decode"]
    ds = pydicom.dcmread(outputs[0])
    assert (ds.Rows, ds.Columns) == (317, 235)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"  # decoded, stored losslessly
    assert ds.LossyImageCompression == "01"  # the source was lossy, and stays marked so


def test_jpeg2000_reversible_is_marked_lossless(converted: dict) -> None:
    _, outputs = converted["jpeg2000-lossless"]
    ds = pydicom.dcmread(outputs[0])
    assert ds.LossyImageCompression == "00"
    assert "JPEG 2000" in ds.DerivationDescription


def test_scan_resolution_gives_nominal_pixel_spacing(converted: dict) -> None:
    _, outputs = converted["tiff-gray16-lzw-predictor"]
    ds = pydicom.dcmread(outputs[0])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7.3"
    assert ds.ConversionType == "DF"
    assert [float(v) for v in ds.NominalScannedPixelSpacing] == pytest.approx([25.4 / 300] * 2, rel=1e-4)
    assert ds.Modality == "PX"


def test_report_lists_every_file(converted: dict) -> None:
    any_out = next(iter(converted.values()))[1][0]
    root = any_out
    while not (root / "orthovision-report.json").exists():
        root = root.parent
    report = run_report(root)
    assert report["counts"] == {"converted": len(NAMES)}
    for f in report["files"]:
        assert f["sha256"] and f["outputs"] and f["labels"]["modality"]["source"] == "manifest"
