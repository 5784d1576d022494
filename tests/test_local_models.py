"""The default pack's real ONNX models on real images from tests/data."""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from testdata import DATA

from orthovision_cli.errors import CorruptImage
from orthovision_cli.inputs.source import SourceImage
from orthovision_cli.labels.local import load_pack, rules


def rows(prefix: str) -> list[dict[str, str]]:
    with (DATA / "labels.csv").open(newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r["path"].startswith(prefix)]


@pytest.fixture(scope="module")
def clf():  # type: ignore[no-untyped-def]
    return load_pack()


def classify_rows(clf, selected):  # type: ignore[no-untyped-def]
    images = [SourceImage(DATA / r["path"], rel=Path(r["path"]).name) for r in selected]
    return clf.classify_many(images)


def test_photographs_are_xc_and_greyscale_images_are_radiographs(clf) -> None:  # type: ignore[no-untyped-def]
    photos = rows("photos/")
    greys = rows("radiographs/") + [r for r in rows("film_scans/") if r["modality"] == "MG"]
    for labels in classify_rows(clf, photos):
        assert labels.value("modality") == "XC"
        assert labels.modality is not None and labels.modality.confidence >= 0.8
    for r, labels in zip(greys, classify_rows(clf, greys), strict=True):
        # The radiograph kind heads name the modality; a film scan (RG) is written as DX.
        truth = set(r["modality"].split("|"))
        if "RG" in truth:
            truth.add("DX")
        assert labels.value("modality") in truth, (r["path"], labels.as_dict())
        alternatives = labels.modality.detail.get("alternatives", []) if labels.modality else []
        assert not any(a["value"] == "XC" for a in alternatives), r["path"]


def test_drawings_are_neither_photograph_nor_radiograph(clf) -> None:  # type: ignore[no-untyped-def]
    for labels in classify_rows(clf, rows("drawings/")):
        assert labels.value("modality") is None
        assert labels.modality is not None and labels.modality.detail["kind"] == "drawing"


def test_a_radiograph_scanned_light_is_no_drawing(clf, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Mostly white paper with few mid greys was taken for a drawing, whose labels are empty
    and written as OT without review: the Bolton-Brush cephalogram scanned light (gamma 0.5)
    is mostly white too, but its grey is broad areas, not strokes on paper. It is a radiograph
    sent to a person; the drawings stay drawings."""
    with Image.open(DATA / "film_scans" / "bfd9000" / "treerez_scan.png") as im:
        grey = np.asarray(im.convert("L"), np.float64) / 255.0
    light = np.stack([(255 * grey**0.5).astype(np.uint8)] * 3, axis=2)
    stats = rules.pixel_stats(light, rules.DEFAULT_COLOUR_RULE)
    assert stats.white_share >= 0.5 and stats.mid_share <= 0.25, stats  # a drawing's figures
    assert stats.stroke_share < 0.6, stats
    assert rules.image_kind(stats, {})[0] == rules.RADIOGRAPH
    path = tmp_path / "light.png"
    Image.fromarray(light).save(path)
    (labels,) = clf.classify_many([SourceImage(path, rel="img.png")])
    assert labels.value("body_part") == "SKULL", labels.as_dict()
    assert labels.protocol is not None and "scanned light" in labels.protocol.detail["note"]
    for tag in ("modality", "protocol", "body_part", "orientation"):
        lab = labels.get(tag)
        assert lab is None or not lab.known or lab.confidence < 0.8, (tag, labels.as_dict())
    for r in rows("drawings/"):
        with Image.open(DATA / r["path"]) as im:
            drawing = rules.pixel_stats(np.asarray(im.convert("RGB")), rules.DEFAULT_COLOUR_RULE)
        assert drawing.stroke_share >= 0.85 and rules.image_kind(drawing, {})[0] == rules.DRAWING, r


def test_frontal_faces_upright_head_frontal_view(clf) -> None:  # type: ignore[no-untyped-def]
    faces = rows("photos/faces_london/")
    for r, labels in zip(faces, classify_rows(clf, faces), strict=True):
        assert labels.value("orientation") == "0", r["path"]
        assert labels.value("body_part") == "HEAD", r["path"]
        assert labels.value("protocol") in ("EV15", "EV19"), r["path"]
        assert labels.protocol is not None and labels.protocol.detail["pose"] == "frontal"
        assert labels.protocol.source == "local:faces"


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_rotated_faces_get_the_correcting_rotation(clf, tmp_path: Path, turn: int) -> None:  # type: ignore[no-untyped-def]
    faces = rows("photos/faces_london/rest/")[:4] + rows("photos/faces_london/smile/")[:2]
    images = []
    for r in faces:
        p = tmp_path / Path(r["path"]).name
        # PIL turns counter-clockwise: a clockwise turn of `turn` shows it upright again.
        Image.open(DATA / r["path"]).rotate(turn, expand=True).save(p, quality=90)
        images.append(SourceImage(p, rel=p.name))
    for labels in clf.classify_many(images):
        assert labels.value("orientation") == str(turn)
        assert labels.orientation is not None
        assert labels.orientation.detail["flip"] == "not assessed"


def test_no_face_on_radiographs_intraoral_or_drawings(clf) -> None:  # type: ignore[no-untyped-def]
    selected = rows("photos/intraoral/") + rows("radiographs/") + rows("drawings/")
    for r, labels in zip(selected, classify_rows(clf, selected), strict=True):
        lab = labels.orientation
        # A face "found" in an intraoral photograph is never written without review.
        assert lab is None or lab.source != "local:faces" or lab.confidence < 0.8, r["path"]
        assert labels.value("body_part") != "HEAD" or r["path"].startswith("drawings/"), r["path"]
        protocol = labels.value("protocol") or ""
        assert not protocol.startswith("EV") or r["path"].startswith("drawings/"), r["path"]


def test_codes_attached_from_the_manifest(clf) -> None:  # type: ignore[no-untyped-def]
    (labels,) = classify_rows(clf, rows("photos/faces_london/smile/")[:1])
    assert labels.modality is not None and labels.modality.codes[0].value == "XC"
    assert labels.protocol is not None and labels.protocol.codes
    assert labels.protocol.meaning and "Full Face" in labels.protocol.meaning


def test_classifier_pickles_and_keeps_working(clf) -> None:  # type: ignore[no-untyped-def]
    clone = pickle.loads(pickle.dumps(clf))
    r = rows("photos/faces_london/rest/")[:1]
    a = classify_rows(clf, r)[0]
    b = classify_rows(clone, r)[0]
    assert a.as_dict() == b.as_dict()


def test_corrupt_image_fails_alone(clf, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    good = DATA / rows("photos/faces_london/rest/")[0]["path"]
    with pytest.raises(CorruptImage):
        clf.classify(SourceImage(bad, rel="bad.jpg"))
    out = clf.classify_many([SourceImage(bad, rel="bad.jpg"), SourceImage(good, rel="x.jpg")])
    assert out[0].value("modality") is None and "error" in out[0].modality.detail
    assert out[1].value("modality") == "XC"


def test_preview_keeps_pixels_needed(clf) -> None:  # type: ignore[no-untyped-def]
    img = SourceImage(DATA / "photos/intraoral/sample_NikonD90.JPG")
    arr = img.preview(384)
    assert arr.dtype == np.uint8 and max(arr.shape[:2]) == 384
