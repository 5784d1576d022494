"""Fast previews: DCT-scaled JPEG decoding, EXIF thumbnails, reduced TIFF reads, deep images."""

from __future__ import annotations

import struct
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from PIL import Image

from orthovision_cli.errors import CorruptImage
from orthovision_cli.inputs.preview import exif_thumbnail, load_preview


def _exif_with_thumbnail(thumb: bytes) -> bytes:
    # Little-endian TIFF: empty IFD0 pointing to IFD1, which holds offset and length of the JPEG.
    ifd0 = 8
    ifd1 = ifd0 + 2 + 4
    data_at = ifd1 + 2 + 2 * 12 + 4
    tiff = b"II*\x00" + struct.pack("<I", ifd0)
    tiff += struct.pack("<H", 0) + struct.pack("<I", ifd1)
    tiff += struct.pack("<H", 2)
    tiff += struct.pack("<HHII", 0x0201, 4, 1, data_at)
    tiff += struct.pack("<HHII", 0x0202, 4, 1, len(thumb))
    tiff += struct.pack("<I", 0) + thumb
    return b"Exif\x00\x00" + tiff


def _jpeg(colour: tuple[int, int, int], size: tuple[int, int], **kw: object) -> bytes:
    buf = BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def test_big_jpeg_is_decoded_scaled(tmp_path: Path) -> None:
    p = tmp_path / "big.jpg"
    p.write_bytes(_jpeg((200, 30, 30), (4000, 3000)))
    arr = load_preview(p, 256)
    assert arr.shape == (192, 256, 3)
    assert abs(int(arr[..., 0].mean()) - 200) < 4


def test_exif_thumbnail_used_when_big_enough(tmp_path: Path) -> None:
    thumb = _jpeg((0, 0, 255), (400, 300))
    exif = _exif_with_thumbnail(thumb)
    assert exif_thumbnail(exif) == thumb
    p = tmp_path / "cam.jpg"
    # The picture is red, its thumbnail blue: the colour tells which one was decoded.
    p.write_bytes(_jpeg((255, 0, 0), (2000, 1500), exif=exif))
    assert load_preview(p, 256)[..., 2].mean() > 200
    # Too small for the request: the picture itself (DCT-scaled) is decoded instead.
    assert load_preview(p, 512)[..., 0].mean() > 200


def test_letterboxed_thumbnail_is_not_trusted(tmp_path: Path) -> None:
    exif = _exif_with_thumbnail(_jpeg((0, 0, 255), (400, 400)))  # square thumb, 4:3 picture
    p = tmp_path / "cam.jpg"
    p.write_bytes(_jpeg((255, 0, 0), (2000, 1500), exif=exif))
    assert load_preview(p, 256)[..., 0].mean() > 200


def test_no_or_broken_exif() -> None:
    assert exif_thumbnail(None) is None
    assert exif_thumbnail(b"Exif\x00\x00II*\x00\xff\xff\xff\x00") is None


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_tiff_reduced_read(tmp_path: Path, compression: str | None) -> None:
    grad = np.tile(np.linspace(0, 255, 3000, dtype=np.uint8), (2000, 1))
    rgb = np.stack([grad, grad, np.full_like(grad, 77)], axis=-1)
    p = tmp_path / "scan.tif"
    tifffile.imwrite(p, rgb, compression=compression, photometric="rgb")
    arr = load_preview(p, 300)
    assert max(arr.shape[:2]) == 300
    assert arr[..., 0][:, 0].mean() < 10 and arr[..., 0][:, -1].mean() > 245
    assert abs(int(arr[..., 2].mean()) - 77) <= 1


def test_sixteen_bit_is_windowed(tmp_path: Path) -> None:
    img = np.tile(np.linspace(1000, 3000, 500).astype(np.uint16), (400, 1))
    p = tmp_path / "deep.tif"
    tifffile.imwrite(p, img)
    arr = load_preview(p, 200)
    assert arr.dtype == np.uint8 and arr.min() <= 5 and arr.max() >= 250
    png = tmp_path / "deep.png"
    Image.fromarray(img).save(png)
    arr = load_preview(png, 200)
    assert arr.min() <= 5 and arr.max() >= 250


def test_garbage_is_corrupt(tmp_path: Path) -> None:
    p = tmp_path / "x.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(CorruptImage):
        load_preview(p, 128)


def test_a_probed_file_is_not_probed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # batch.analyse probes every input before classifying it: the preview skips its own probe
    # then (a JPEG's EOI scan and EXIF parse, ~5 ms on a 24 MP file), with the same pixels.
    from orthovision_cli.inputs import preview
    from orthovision_cli.inputs.source import SourceImage

    p = tmp_path / "big.jpg"
    p.write_bytes(_jpeg((30, 200, 30), (1600, 1200)))
    calls: list[Path] = []
    real = preview.probe

    def counted(path: Path, *args: Any, **kwargs: Any) -> Any:
        calls.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(preview, "probe", counted)
    fresh = SourceImage(p).preview(256)
    assert calls == [p]
    again = SourceImage(p, probed=True).preview(256)
    assert calls == [p]
    assert np.array_equal(fresh, again)
