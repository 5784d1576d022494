"""Decisions without a browser: the server's guards, the decisions file, stale decisions,
`review --apply` (real files, real runs)."""

from __future__ import annotations

import csv
import http.client
import io
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SAMPLE, dciodvfy
from hypothesis import given, settings
from hypothesis import strategies as st
from testdata import DATA, UNSURE_FACE, run_report

from orthovision_cli.batch.runner import run_convert
from orthovision_cli.config import ConvertSettings
from orthovision_cli.decisions import Decision, DecisionBook, clean, load
from orthovision_cli.review.items import code_tables, load_items
from orthovision_cli.review.server import ReviewApp, make_server


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orthovision_cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def out(tmp_path: Path) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copy(UNSURE_FACE, inbox)
    # A neutral name: the name hint "bitewing" would settle its protocol; the pixels leave
    # bitewing vs periapical to a person (docs/models.md), so it goes to review.
    shutil.copy(SAMPLE / "radiographs" / "bitewing.png", inbox / "film.png")
    # Sure of all four tags (a limb or chest film would wait: film or digital is not told).
    shutil.copy(DATA / "radiographs/panoramic/basic_panoramic_radiograph.jpg", inbox)
    out = tmp_path / "out"
    proc = _cli("convert", str(inbox), "-o", str(out), "-j", "1", "--no-fsync")
    assert proc.returncode == 4, proc.stderr
    return out


def test_review_items_carry_proposed_labels(out: Path) -> None:
    items = load_items(out)
    assert [Path(i.input).name for i in items] == ["082_08.jpg", "film.png"]
    photo = items[0]
    assert photo.labels["protocol"]["value"] == "EV19" and photo.labels["protocol"]["source"] == "local:faces"
    assert photo.uncertain == ["protocol"] and items[1].uncertain == ["protocol"]
    assert len(photo.sha256) == 64
    tables = code_tables()
    assert {"value": "EV01", "meaning": tables["views"][0]["meaning"]} in tables["views"]
    assert any(p["value"] == "PANORAMIC" for p in tables["radiograph_protocols"])
    assert any(m["value"] == "XC" for m in tables["modality"])


def test_clean_rejects_bad_values() -> None:
    sha = "0" * 64
    assert clean(Decision("/x.jpg", sha, "xc", "EV01", "head", "rot90")).modality == "XC"
    with pytest.raises(Exception, match="modality"):
        clean(Decision("/x.jpg", sha, "NOPE"))
    with pytest.raises(Exception, match="orientation"):
        clean(Decision("/x.jpg", sha, orientation="45"))


@pytest.fixture
def served(out: Path) -> Iterator[tuple[ReviewApp, int]]:
    app = ReviewApp(out, who="tester")
    httpd = make_server(app, 0)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    yield app, httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def _request(
    port: int, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers=headers or {})
    resp = conn.getresponse()
    return resp.status, resp.read()


def test_server_guards_and_saves(out: Path, served: tuple[ReviewApp, int]) -> None:
    app, port = served
    good = {"X-Orthovision-Token": app.token}
    status, page = _request(port, "GET", "/", headers=good)
    assert status == 200 and app.token.encode() in page
    status, _ = _request(port, "GET", "/", headers={"Host": f"evil.example:{port}", **good})
    assert status == 403  # DNS rebinding: another name for this address
    status, jpeg = _request(port, "GET", "/preview/1", headers=good)
    assert status == 200 and jpeg[:2] == b"\xff\xd8"
    photo = app.items[0].input
    decision = {
        "decisions": [
            {"input": photo, "modality": "XC", "protocol": "IV07", "body_part": "HEAD", "orientation": "90"}
        ]
    }
    status, _ = _request(port, "POST", "/api/decide", decision)
    assert status == 403  # no token: another web page cannot post decisions
    status, body = _request(
        port, "POST", "/api/decide", {"decisions": [{"input": photo, "modality": "ZZ"}]}, good
    )
    assert status == 400 and b"modality" in body
    status, body = _request(port, "POST", "/api/decide", {"decisions": [{"input": "/etc/passwd"}]}, good)
    assert status == 400 and b"not awaiting review" in body
    status, body = _request(port, "POST", "/api/decide", decision, good)
    assert status == 200, body
    rows = list(csv.DictReader((out / "orthovision-decisions.csv").open()))
    assert len(rows) == 1 and rows[0]["protocol"] == "IV07" and rows[0]["decided_by"] == "tester"
    assert rows[0]["sha256"] == app.items[0].sha256
    # A second decision on the same file replaces the first; no temporary file is left.
    decision["decisions"][0]["orientation"] = "270+flip"
    assert _request(port, "POST", "/api/decide", decision, good)[0] == 200
    assert load(out)[photo].orientation == "270+flip"
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [".orthovision"]
    status, body = _request(port, "GET", "/api/items", headers=good)
    listed = json.loads(body)["items"]
    assert listed[0]["decision"]["orientation"] == "270+flip" and listed[1]["decision"] is None


def _settings(out: Path) -> ConvertSettings:
    from orthovision_cli.review.apply import recall

    return recall(out)


def test_stale_decision_is_ignored_with_a_warning(out: Path) -> None:
    items = load_items(out)
    bite = items[1]
    DecisionBook(out).save([clean(Decision(bite.input, "f" * 64, "IO", "BITEWING", "JAW", "0"))])
    summary = run_convert(_settings(out))
    assert any("film.png" in w and "decision is ignored" in w for w in summary.warnings)
    report = run_report(out)
    assert report["warnings"] == summary.warnings
    assert {Path(r.path).name: r.status for r in summary.results}["film.png"] == "review"


def test_apply_converts_only_decided_files(out: Path) -> None:
    items = load_items(out)
    photo, _ = items
    DecisionBook(out).save([clean(Decision(photo.input, photo.sha256, "XC", "EV08", "HEAD", "0"))])
    # A new file in the inbox is not part of --apply.
    # (an intraoral photo: sure of all four tags, unlike a face at rest since issue 28)
    shutil.copy(SAMPLE / "photos" / "sample_NikonD90.JPG", Path(photo.input).parent)
    proc = _cli("review", str(out), "--apply")
    assert proc.returncode == 4, proc.stderr  # the bitewing still awaits a person
    report = run_report(out)
    status = {Path(f["input"]).name: f["status"] for f in report["files"]}
    assert status == {
        "082_08.jpg": "converted",
        "film.png": "review",
        "basic_panoramic_radiograph.jpg": "unchanged",
    }
    rows = list(csv.DictReader((out / "orthovision-review.csv").open()))
    assert [Path(r["input"]).name for r in rows] == ["film.png"]
    assert [Path(i.input).name for i in load_items(out)] == ["film.png"]
    import pydicom

    ds = pydicom.dcmread(next(out.rglob("082_08.dcm")))
    assert "protocol=EV08 (person, 1.00)" in str(ds.ContributingEquipmentSequence[0].ContributionDescription)
    # Protocol Name is the series' family (issue 21), the same for each instance of the series.
    assert str(ds.ProtocolName) == "Orthodontic Extraoral Series"
    errors, _ = dciodvfy(next(out.rglob("082_08.dcm")))
    assert errors == []
    # The next plain convert finds it done, and picks up the new file.
    summary = run_convert(_settings(out))
    by_name = {Path(r.path).name: r.status for r in summary.results}
    assert by_name["082_08.jpg"] == "unchanged" and by_name["sample_NikonD90.JPG"] == "converted"


_paths = st.text(st.characters(codec="utf-8", blacklist_characters="\x00"), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(
    paths=st.lists(_paths, min_size=1, max_size=5, unique=True),
    view=st.sampled_from(["EV01", "IV07", "PANORAMIC", ""]),
    orientation=st.sampled_from(["0", "90", "270+flip", "180"]),
)
def test_decisions_file_round_trips(
    tmp_path_factory: pytest.TempPathFactory, paths: list[str], view: str, orientation: str
) -> None:
    """Whatever the file names (commas, quotes, newlines, non-ASCII), what is saved is read back."""
    out = tmp_path_factory.mktemp("book")
    rows = [
        clean(Decision("/in/" + p, f"{i:064x}", "XC", view, "HEAD", orientation, "anna, b.", "t"))
        for i, p in enumerate(paths)
    ]
    DecisionBook(out).save(rows)
    assert load(out) == {d.input: d for d in rows}


def _get(
    port: int, path: str, headers: dict[str, str] | None = None, token: str = ""
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers={"X-Orthovision-Token": token, **(headers or {})})
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def test_previews_cached_by_content_hash(out: Path, served: tuple[ReviewApp, int]) -> None:
    app, port = served
    film = app.items[1]
    url = f"/preview/1?sha={film.sha256}&size=full"
    status, headers, jpeg = _get(port, url, token=app.token)
    assert status == 200 and jpeg[:2] == b"\xff\xd8"
    # Named by the content hash: the browser keeps it and need not ask again.
    assert headers["etag"] == f'"{film.sha256}-full"' and "immutable" in headers["cache-control"]
    status, headers, body = _get(port, url, {"If-None-Match": headers["etag"]}, token=app.token)
    assert status == 304 and body == b""
    status, _, thumb = _get(port, f"/preview/1?sha={film.sha256}&size=thumb", token=app.token)
    assert status == 200 and len(thumb) < len(jpeg)
    assert app.previews.decodes == 1  # one decode made both sizes
    assert _get(port, "/preview/1?size=huge", token=app.token)[0] == 404
    assert _get(port, url, {"Host": f"evil.example:{port}"}, token=app.token)[0] == 403
    cache = out / ".orthovision" / "previews" / film.sha256[:2]
    assert sorted(p.name for p in cache.iterdir()) == [
        f"{film.sha256}-full-v1.jpg",
        f"{film.sha256}-thumb-v1.jpg",
    ]

    # A second server on the same output decodes nothing: the previews are on disk.
    again = ReviewApp(out)
    assert again.previews.jpeg(Path(film.input), again.content_key(again.items[1]), "full") == jpeg
    assert again.previews.decodes == 0

    # The file changed since convert: its new content is previewed, and the URL with the old
    # hash is no longer cacheable for good.
    src = Path(film.input)
    from PIL import Image

    Image.open(src).transpose(Image.Transpose.ROTATE_90).save(src)
    status, headers, turned = _get(port, url, token=app.token)
    assert status == 200 and turned != jpeg and headers["cache-control"] == "private, no-cache"
    assert headers["etag"] != f'"{film.sha256}-full"' and app.previews.decodes == 2
    # A restart drops cached previews of content the state does not list for review.
    new = headers["etag"].strip('"').split("-")[0]
    assert any(p.name.startswith(new) for p in cache.parent.glob("*/*"))
    ReviewApp(out)
    assert not any(p.name.startswith(new) for p in cache.parent.glob("*/*"))
    assert any(p.name.startswith(film.sha256) for p in cache.parent.glob("*/*"))


def test_list_thumbnail_from_the_cameras_exif_thumbnail(tmp_path: Path) -> None:
    from PIL import Image

    from orthovision_cli.review.preview import exif_thumb_jpeg

    camera = SAMPLE / "photos" / "sample_NikonD90.JPG"  # a 160x120 thumbnail, letterboxed
    thumb = exif_thumb_jpeg(camera, 96)
    assert thumb is not None
    with Image.open(camera) as im:
        w, h = im.size
    t = Image.open(io.BytesIO(thumb))
    assert max(t.size) == 96 and abs(t.size[0] / t.size[1] - w / h) < 0.05  # bars cut off
    # No thumbnail (PNG), or one stretched to another shape: the picture must be decoded.
    assert exif_thumb_jpeg(SAMPLE / "photos" / "sjtu_p0_frontal.png", 96) is None
    with Image.open(camera) as im:
        exif = im.getexif()
        small = im.resize((600, 400))
    stretched = tmp_path / "stretched.jpg"
    small.save(stretched, exif=exif)  # Pillow writes no thumbnail: none to trust
    assert exif_thumb_jpeg(stretched, 96) is None


def test_forged_exif_thumbnail_is_not_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thumbnail whose header claims a huge picture is not decoded (memory): the picture
    itself is previewed instead, through the readers' bounds."""
    from PIL import Image

    from orthovision_cli.inputs import preview as inputs_preview
    from orthovision_cli.review.preview import exif_thumb_jpeg

    buf = io.BytesIO()
    Image.new("RGB", (160, 120), "white").save(buf, "JPEG")
    blob = bytearray(buf.getvalue())
    sof = blob.index(b"\xff\xc0")
    blob[sof + 5 : sof + 9] = (20000).to_bytes(2, "big") + (30000).to_bytes(2, "big")  # height, width
    camera = SAMPLE / "photos" / "sample_NikonD90.JPG"
    assert exif_thumb_jpeg(camera, 96) is not None
    monkeypatch.setattr(inputs_preview, "exif_thumbnail", lambda exif: bytes(blob))
    assert exif_thumb_jpeg(camera, 96) is None
