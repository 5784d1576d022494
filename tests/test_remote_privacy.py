"""Nothing that identifies a patient leaves the machine: every request body is captured on a
real HTTP server and searched for metadata, names, paths and patient values."""

from __future__ import annotations

import base64
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("starlette")

from PIL import Image, PngImagePlugin
from testdata import DATA

from orthovision_cli.inputs.source import SourceImage
from orthovision_cli.labels.model import Labels
from orthovision_cli.remote import build_remote_source
from orthovision_cli.server.app import create_app
from orthovision_cli.server.rules import ColourRuleClassifier
from orthovision_cli.server.runner import serve_in_thread

NIKON = DATA / "photos" / "intraoral" / "sample_NikonD90.JPG"
PATIENT = "Jane Doe"
PATIENT_ID = "PID-778899"
BIRTH = "1970-01-02"
# What must never be in a request: patient values, EXIF/XMP/GPS/maker-note/comment markers.
NEEDLES = [
    b"Jane Doe",
    b"DOE_JANE",
    PATIENT_ID.encode(),
    BIRTH.encode(),
    b"Exif\x00\x00",
    b"http://ns.adobe.com/xap/1.0/",
    b"x:xmpmeta",
    b"NIKON CORPORATION",
    b"Nikon\x00",
    b"MAKERNOTE",
    b"Photoshop 3.0",
]
# Short markers only searched outside compressed pixel data (where any 3-4 bytes occur by chance).
SHORT = [b"Jane", b"Doe", b"DOE", b"778899", b"NIKON", b"Nikon", b"tEXt", b"iTXt", b"eXIf"]


class Capture:
    """ASGI wrapper that records every request (path, query, headers, body)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record: dict[str, Any] = {
            "path": scope["path"],
            "query": scope.get("query_string", b""),
            "headers": list(scope.get("headers", [])),
            "body": bytearray(),
        }
        self.requests.append(record)

        async def recv() -> Any:
            msg = await receive()
            if msg["type"] == "http.request":
                record["body"].extend(msg.get("body", b""))
            return msg

        await self.app(scope, recv, send)


def png_chunks(data: bytes) -> set[bytes]:
    names, pos = set(), 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        names.add(data[pos + 4 : pos + 8])
        pos += 12 + length
    return names


def rgb(h: int = 96, w: int = 128) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 2 % 256, y * 2 % 256, (x + y) % 256], -1).astype(np.uint8)


def exif() -> Image.Exif:
    e = Image.Exif()
    e[0x010E] = f"Patient {PATIENT} {PATIENT_ID}"  # ImageDescription
    e[0x013B] = PATIENT  # Artist
    e[0x010F] = "NIKON CORPORATION"  # Make
    sub = e.get_ifd(0x8769)
    sub[0x927C] = b"Nikon\x00MAKERNOTE " + PATIENT_ID.encode()  # MakerNote
    sub[0x9286] = b"ASCII\x00\x00\x00" + f"DOB {BIRTH}".encode()  # UserComment
    gps = e.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (52.0, 31.0, 12.0)
    return e


XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-'
    b'syntax-ns#"><rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator>'
    + PATIENT.encode()
    + b"</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>"
)


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[list[SourceImage]]:
    folder = tmp_path / f"{PATIENT.replace(' ', '_')}_{PATIENT_ID}"
    folder.mkdir()
    files = []
    jpg = folder / f"DOE_JANE_{BIRTH}_frontal.jpg"
    Image.fromarray(rgb()).save(
        jpg, "JPEG", exif=exif(), comment=f"{PATIENT} {PATIENT_ID}".encode(), xmp=XMP, quality=90
    )
    files.append(jpg)
    png = folder / f"DOE_JANE_{BIRTH}_lateral.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("Patient", f"{PATIENT} {PATIENT_ID}")
    info.add_itxt("Comment", f"DOB {BIRTH}")
    Image.fromarray(rgb()).save(png, "PNG", pnginfo=info, exif=exif())
    files.append(png)
    import tifffile

    tif = folder / f"DOE_JANE_{BIRTH}_ceph.tif"
    tifffile.imwrite(
        tif,
        rgb(),
        photometric="rgb",
        description=f"Patient: {PATIENT} ID {PATIENT_ID} DOB {BIRTH}",
        software="Nikon Scan",
        extratags=[(315, "s", 0, PATIENT, True), (700, "B", len(XMP), XMP, True)],
    )
    files.append(tif)
    if NIKON.exists():
        real = folder / f"DOE_JANE_{BIRTH}_intraoral.JPG"
        shutil.copy(NIKON, real)
        files.append(real)
    for f in files:  # the fixtures really carry what the test looks for
        raw = f.read_bytes()
        assert b"Doe" in raw or b"NIKON" in raw
    yield [SourceImage(path=f, rel=f"{folder.name}/{f.name}") for f in files]


def test_requests_carry_pixels_only(archive: list[SourceImage]) -> None:
    capture = Capture(create_app(ColourRuleClassifier()))
    with serve_in_thread(capture) as url, build_remote_source(url, modality="XC") as rc:
        results = list(rc.classify_many(archive, concurrency=2))
    assert all(isinstance(r, Labels) for _, r in results), results
    needles = [*NEEDLES]
    for img in archive:
        needles += [img.path.name.encode(), img.path.stem.encode(), str(img.path.parent).encode()]
    posts = [r for r in capture.requests if r["body"]]
    assert len(posts) == len(archive)
    for req in capture.requests:
        where = req["path"].encode() + b"?" + req["query"]
        headers = b"\n".join(k + b": " + v for k, v in req["headers"])
        body = bytes(req["body"])
        texts = [where, headers]
        images = []
        if body:
            bundle = json.loads(body)
            for entry in bundle["entry"]:
                res = entry["resource"]
                if res["resourceType"] == "Binary":
                    image = base64.b64decode(res.pop("data"))
                    images.append(image)
                    if image.startswith(b"\x89PNG"):
                        assert png_chunks(image) <= {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"sRGB"}
                    with Image.open(io.BytesIO(image)) as im:  # still a whole image
                        im.load()
                        assert not im.info.get("exif") and "comment" not in im.info
                        assert not any(str(k).lower() in ("patient", "xmp") for k in im.info)
                if res["resourceType"] == "ImagingStudy":
                    assert "reference" not in res["subject"]
                    assert set(res) <= {"resourceType", "status", "modality", "subject"}
                if res["resourceType"] == "Task":
                    assert "for" not in res and "owner" not in res
            texts.append(json.dumps(bundle).encode())
        for payload in texts:
            for needle in [*needles, *SHORT]:
                assert needle not in payload, (needle, req["path"])
        for payload in images:
            for needle in needles:
                assert needle not in payload, (needle, req["path"])


def test_jpeg_pixels_are_untouched(archive: list[SourceImage]) -> None:
    from orthovision_cli.remote.sanitize import pixels_only

    jpg = archive[0]
    sent, ctype = pixels_only(jpg)
    assert ctype == "image/jpeg"
    with Image.open(jpg.path) as a, Image.open(io.BytesIO(sent)) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))  # same entropy-coded data
    tif = archive[2]
    sent, ctype = pixels_only(tif)
    assert ctype == "image/png"
    with Image.open(io.BytesIO(sent)) as b:
        assert np.array_equal(np.asarray(b), rgb())  # lossless
