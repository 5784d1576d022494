"""Radiograph kinds on sources the pack never saw (issue 22): scanner-independent cues that agree
raise the confidence and that disagree send to review, intraoral films that never become hands
and never get a turn written unreviewed, and the kind head's calibration fitted on left-out
sources keeping a held-out source right and sure.

Images: tests/data (NOTICE.md there); the held-out test fits its own small head on them.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont, ImageOps

from orthovision_cli.inputs.source import SourceImage
from orthovision_cli.labels.local import load_pack, radiograph, radiograph_geometry
from orthovision_cli.labels.local import radiograph_calibration as rc
from orthovision_cli.labels.local.augment import augment
from orthovision_cli.labels.local.classifier import LocalClassifier
from orthovision_cli.labels.local.faces import rotate
from orthovision_cli.labels.local.heads import LinearHead, fit_head
from orthovision_cli.labels.local.radiograph_augment import source_shift
from orthovision_cli.labels.local.work import PREVIEW_SIDE, to_feature_input
from orthovision_cli.labels.model import Labels, Tag

DATA = Path(__file__).resolve().parent / "data"
CLASSIFY = DATA / "classify"


@pytest.fixture(scope="module")
def clf() -> LocalClassifier:
    return load_pack()


def classify(clf: LocalClassifier, paths: list[Path]) -> list[Labels]:
    return clf.classify_many([SourceImage(p, rel=f"img{i:03d}.png") for i, p in enumerate(paths)])


def _sure(labels: Labels, tag: Tag) -> bool:
    lab = labels.get(tag)
    return lab is not None and lab.known and lab.confidence >= 0.8


def test_a_small_film_is_never_called_hand(clf: LocalClassifier, tmp_path: Path) -> None:
    """The periapical at its film's size (about 3.5 cm long at the stated 600 dpi), under a
    new scanner's contrast and turned: an intraoral film (IO, JAW), never a hand; and with no
    resolution stated, never a hand written without review."""
    with Image.open(CLASSIFY / "periapical.jpg") as im:
        grey = im.convert("L").resize((830, 594))
    variants: dict[str, Image.Image] = {
        "as is": grey,
        "dark": Image.fromarray((255 * (np.asarray(grey) / 255.0) ** 2.2).astype(np.uint8)),
        "equalised": ImageOps.equalize(grey),
        "washed out": Image.fromarray((80 + np.asarray(grey) * 0.4).astype(np.uint8)),
    }
    sized, unsized = [], []
    for i, variant in enumerate(variants.values()):
        for turn in (0, 90, 180, 270):
            turned = variant.rotate(turn, expand=True)
            p = tmp_path / f"s{i}_{turn}.png"
            turned.save(p, dpi=(600, 600))
            sized.append(p)
            q = tmp_path / f"u{i}_{turn}.png"
            turned.save(q)
            unsized.append(q)
    for p, labels in zip(sized, classify(clf, sized), strict=True):
        assert labels.value("modality") == "IO", (p.name, labels.as_dict())
        assert labels.value("body_part") == "JAW", (p.name, labels.as_dict())
    for p, labels in zip(unsized, classify(clf, unsized), strict=True):
        assert not (labels.value("body_part") == "HAND" and _sure(labels, "body_part")), (
            p.name,
            labels.as_dict(),
        )
        assert labels.value("protocol") != "HAND_WRIST" or not _sure(labels, "protocol"), (
            p.name,
            labels.as_dict(),
        )


def test_a_periapical_is_never_turned_without_review(clf: LocalClassifier, tmp_path: Path) -> None:
    """Up and down of a periapical are a convention (crowns down for the maxilla): whatever
    turn the tool proposes for one, it is never written without a person's look."""
    paths = []
    for turn in (0, 90, 180, 270):
        p = tmp_path / f"t{turn}.png"
        Image.open(CLASSIFY / "periapical.jpg").rotate(turn, expand=True).save(p)
        paths.append(p)
    for p, labels in zip(paths, classify(clf, paths), strict=True):
        assert labels.value("modality") == "IO", (p.name, labels.as_dict())
        lab = labels.orientation
        assert lab is None or not lab.known or lab.confidence < 0.8, (p.name, labels.as_dict())


@pytest.mark.parametrize("name", ["periapical.jpg", "limb.jpg", "ceph_lateral.jpg", "mammogram.png"])
def test_a_film_is_the_same_kind_whichever_way_it_was_stored(
    clf: LocalClassifier, tmp_path: Path, name: str
) -> None:
    """The kind head learnt every film four ways and is asked on the four turns (those the
    rotation head looks at, and a mammogram's); their average is the same for a film stored in
    any turn (the one
    look of the picture as stored moved by up to 0.013 on these films, and on a panoramic tile
    of an unseen source, turned 180, from panoramic to a sure bitewing)."""
    paths = []
    for turn in (0, 90, 180, 270):
        p = tmp_path / f"t{turn}.png"
        Image.open(CLASSIFY / name).rotate(turn, expand=True).save(p)
        paths.append(p)
    tables = []
    for labels in classify(clf, paths):
        assert labels.modality is not None, labels.as_dict()
        tables.append(labels.modality.detail["probabilities"])
    kinds = sorted(tables[0])
    spread = np.ptp([[t[k] for k in kinds] for t in tables], axis=0).max()
    assert spread <= 0.003, (name, tables)


def test_a_cue_that_disagrees_sends_to_review(clf: LocalClassifier, tmp_path: Path) -> None:
    """A lateral cephalogram whose file states a resolution at which it is 4 cm long (an
    intraoral film's size: a journal figure, a wrong scanner setting) is not written as a
    skull without review, and the detail says which cue disagreed; the same picture without a
    resolution is written as before."""
    with Image.open(CLASSIFY / "ceph_lateral.jpg") as im:
        small = tmp_path / "small.png"
        im.save(small, dpi=(round(max(im.size) / 4.0 * 2.54), 300))
        plain = tmp_path / "plain.png"
        im.save(plain)
    small_labels, plain_labels = classify(clf, [small, plain])
    for tag in ("protocol", "body_part"):
        assert not _sure(small_labels, tag), small_labels.as_dict()
        assert _sure(plain_labels, tag), plain_labels.as_dict()
    proto = small_labels.get("protocol")
    assert proto is not None and proto.detail["cues"]["physical_size"] == "disagrees", small_labels.as_dict()


def _geo(long_cm: float | None, aspect: float = 1.25, symmetry: float = 0.3) -> radiograph_geometry.Geometry:
    return radiograph_geometry.Geometry(aspect, long_cm, symmetry)


def test_a_cue_that_agrees_raises_the_confidence() -> None:
    """A head unsure between a chest and a periapical: a stated chest-sized film settles it
    above the review threshold; an intraoral-sized one turns it into a film, not a chest."""
    classes = ["chest", "hand_wrist", "periapical"]
    probs = np.array([0.6, 0.1, 0.3])
    unknown = radiograph.decide(classes, probs, _geo(None))
    chest_sized = radiograph.decide(classes, probs, _geo(40.0))
    film_sized = radiograph.decide(classes, probs, _geo(3.5))
    assert unknown.kind == "chest" and unknown.confidence < 0.8
    assert chest_sized.kind == "chest" and chest_sized.confidence >= 0.8
    assert chest_sized.cues["physical_size"] == radiograph.AGREE
    assert film_sized.kind == "periapical"


def test_two_views_on_one_film_are_never_a_skull() -> None:
    """A film with a straight white band across its middle holds two views (knees, a hand and
    its oblique view): a head that calls it a cephalogram is sent to review."""
    a = np.full((400, 320, 3), 60, np.uint8)
    a[:, 156:164] = 250  # the divider between the two views
    geo = radiograph_geometry.geometry(a, (320, 400), None)
    assert geo.divider >= radiograph.TWO_VIEWS_MIN_DIVIDER
    d = radiograph.decide(["ceph_lateral", "limb"], np.array([0.95, 0.05]), geo)
    # The head's choice is overturned, and the runner-up is not made sure by it.
    assert d.cues.get("two_views (ceph_lateral)") == radiograph.DISAGREE, d
    assert d.confidence < 0.8 and d.protocol_confidence < 0.8, d
    with Image.open(CLASSIFY / "ceph_lateral.jpg") as im:
        ceph = np.asarray(im.convert("RGB"))
    assert radiograph_geometry.geometry(ceph, None, None).divider < radiograph.TWO_VIEWS_MIN_DIVIDER


CONTRAST_CURVES = {
    "as stored": lambda x: x,
    "washed out": lambda x: 60 + 0.45 * x,
    "dark": lambda x: 0.6 * x,
    "gamma 2": lambda x: 255 * (x / 255) ** 2,
    "gamma 0.5": lambda x: 255 * (x / 255) ** 0.5,
}


@pytest.mark.parametrize("curve", sorted(CONTRAST_CURVES))
def test_two_views_are_told_whatever_the_scanner_contrast(curve: str) -> None:
    """The real two-view knee film (a film scan) as another scanner would store it: its white
    divider is the brightest band whether or not the scan uses the whole grey range, so a head
    that calls it a cephalogram is sent to review. Washed out, the divider was not seen and a
    head fitted without the film wrote SKULL at 0.98 (check_open_labels.py --loso --shift flat)."""
    with Image.open(CLASSIFY / "knees_two_views.png") as im:
        grey = np.asarray(im.convert("L"), np.float64)
    shifted = np.clip(CONTRAST_CURVES[curve](grey), 0, 255).astype(np.uint8)
    for turn in (0, 90):
        geo = radiograph_geometry.geometry(rotate(np.stack([shifted] * 3, axis=2), turn), None, None)
        assert geo.divider >= radiograph.TWO_VIEWS_MIN_DIVIDER, (curve, turn, geo)
        d = radiograph.decide(["ceph_lateral", "limb"], np.array([0.98, 0.02]), geo)
        assert d.confidence < 0.8 and d.protocol_confidence < 0.8, (curve, turn, d)
    # Single views under the same curve keep no divider (the stretch makes no band).
    for name in ("ceph_lateral.jpg", "chest_1.png", "panoramic.jpg", "bitewing.png"):
        with Image.open(CLASSIFY / name) as im:
            g = np.asarray(im.convert("L"), np.float64)
        one = np.clip(CONTRAST_CURVES[curve](g), 0, 255).astype(np.uint8)
        geo = radiograph_geometry.geometry(np.stack([one] * 3, axis=2), None, None)
        assert geo.divider < radiograph.TWO_VIEWS_MIN_DIVIDER, (curve, name, geo)


@pytest.mark.parametrize("turn", [0, 90, 180, 270])
def test_a_symmetric_film_in_any_turn_is_never_a_mammogram(turn: int) -> None:
    """No orientation is claimed for a mammogram, so its symmetry cue may not rest on the
    picture as stored: the PA cephalogram stored turned a quarter, which a head fitted without
    it called a mammogram at 0.99 (leave-one-source-out), is sent to review; the open
    mammogram, in every turn, is not."""
    classes = ["mammogram", "ceph_pa", "chest"]
    with Image.open(CLASSIFY / "ceph_pa.jpg") as im:
        pa = rotate(np.asarray(im.convert("RGB")), turn)
    with Image.open(CLASSIFY / "mammogram.png") as im:
        breast = rotate(np.asarray(im.convert("RGB")), turn)
    d = radiograph.decide(
        classes, np.array([0.99, 0.005, 0.005]), radiograph_geometry.geometry(pa, None, None)
    )
    assert d.kind == "mammogram" and d.cues["symmetry"] == radiograph.DISAGREE and d.confidence < 0.8, d
    d = radiograph.decide(
        classes, np.array([0.99, 0.005, 0.005]), radiograph_geometry.geometry(breast, None, None)
    )
    assert d.kind == "mammogram" and d.cues["symmetry"] == radiograph.AGREE and d.confidence >= 0.8, d


# --- calibration on a held-out source -------------------------------------------------------

# Sources in tests/data: one picture or patient each.
SOURCES: dict[str, tuple[str, list[str]]] = {
    "fernro": ("ceph_lateral", ["radiographs/ceph/fernroentgenseitenbild.jpg"]),
    "landmarks": ("ceph_lateral", ["radiographs/ceph/landmarks_26points.jpg"]),
    "bolton": ("ceph_lateral", ["radiographs/ceph/B1893L12.jpg"]),
    "treerez": ("ceph_lateral", ["film_scans/bfd9000/treerez_scan.png"]),
    "chest-a": ("chest", ["radiographs/chest/1ae7877e.png", "radiographs/chest/5782ae15.png"]),
    "chest-b": ("chest", ["radiographs/chest/7afaaccc.png", "radiographs/chest/9a9b2393.png"]),
    "ddsm-41": ("mammogram", ["film_scans/Calc-Test_P_00041_LEFT_CC.png"]),
    "ddsm-127": ("mammogram", ["film_scans/Calc-Test_P_00127_RIGHT_CC.png"]),
    "pano": ("panoramic", ["radiographs/panoramic/basic_panoramic_radiograph.jpg"]),
    "limb-a": ("limb", ["radiographs/musculoskeletal/IMG0003297.jpg"]),
    "limb-b": ("limb", ["radiographs/musculoskeletal/IMG0003301.jpg"]),
}
UPRIGHT_TURN = {"radiographs/ceph/B1893L12.jpg": 90, "film_scans/bfd9000/treerez_scan.png": 270}


def test_calibration_keeps_a_held_out_source_right_and_sure(clf: LocalClassifier) -> None:
    """A cephalogram source left out and shown with another scanner's contrast: a head fitted
    on the other sources, calibrated on their left-out predictions only, is sure of (nearly)
    every look it names right, and of none it names wrong."""
    assert clf.features is not None
    rng = random.Random(3)
    rows: list[tuple[str, str, int, int, np.ndarray]] = []  # source, kind, variant, turn, features
    geos: dict[str, radiograph_geometry.Geometry] = {}
    held = "fernro"
    for name, (kind, files) in SOURCES.items():
        for rel in files:
            img = SourceImage(DATA / rel, rel=rel).preview(PREVIEW_SIDE)
            upright = rotate(img, UPRIGHT_TURN.get(rel, 0))
            geos.setdefault(name, radiograph_geometry.geometry(upright, None, None))
            looks = [upright]
            for _ in range(3):
                shifted = source_shift(upright, rng)
                # The held-out source is seen only with another scanner's look.
                looks.append(
                    shifted if name == held else augment(shifted, rng, mirror_ok=True, greyscale=True)
                )
            batch = np.stack(
                [to_feature_input(rotate(a, t), clf.feature_size) for a in looks for t in (0, 90, 180, 270)]
            )
            (feats,) = clf.features.run(batch, ["features"])
            for j, f in enumerate(feats):
                rows.append((name, kind, j // 4, (j % 4) * 90, f))

    def fit(exclude: set[str]) -> LinearHead:
        tr = [r for r in rows if r[0] not in exclude]
        return fit_head(np.stack([r[4] for r in tr]), [r[1] for r in tr], l2=0.05, iterations=150)

    records: list[rc.Record] = []
    for g in SOURCES:
        if g == held:
            continue
        head = fit({held, g})
        for name, kind, variant, _turn, f in rows:
            if name == g and variant == 0:
                records.append(rc.Record(kind, head.classes, head.predict_proba(f[None])[0], geos[g]))
    calibration = rc.fit_calibration(records)
    # Calibrated, no more of the left-out predictions are wrong and sure than at 1.
    wrong_sure = rc.sure_counts([rc.tags(r, calibration)[1] for r in records])[2]
    assert wrong_sure <= rc.sure_counts([rc.tags(r, radiograph.Calibration())[1] for r in records])[2]
    head = fit({held})
    looks = [f for name, _, variant, _, f in rows if name == held and variant > 0]
    assert len(looks) == 12
    got = []
    for f in looks:
        d = radiograph.decide(head.classes, head.predict_proba(f[None])[0], geos[held], calibration)
        got.append((d.kind == "ceph_lateral", d.protocol_confidence >= 0.8))
    right = sum(ok for ok, _ in got)
    right_sure = sum(ok and sure for ok, sure in got)
    # The bar: right and sure at least 90 % of right, nothing wrong written unreviewed.
    assert right >= 8 and right_sure >= 0.9 * right, (got, calibration)
    assert not any(sure and not ok for ok, sure in got), (got, calibration)


NEGATIVE_FILMS = [
    "panoramic.jpg",
    "ceph_lateral.jpg",
    "chest_1.png",
    "hand_wrist.png",
    "bitewing.png",
    "mammogram.png",
]


def test_a_film_stored_as_a_negative_goes_to_a_person(clf: LocalClassifier, tmp_path: Path) -> None:
    """A radiograph stored as a negative (bone dark: inverted data, a sensor program's negative
    view) is read by heads that learnt positives only: an inverted panoramic of an unseen
    source was turned the wrong way at 0.97 and an inverted periapical written MG, BREAST at
    0.87 (`check_open_labels.py --loso --shift invert`). The polarity head sends it to a
    person, and lets the same films stored as positives through."""
    positives, negatives = [], []
    for name in NEGATIVE_FILMS:
        with Image.open(CLASSIFY / name) as im:
            grey = im.convert("L")
        positives.append(tmp_path / f"pos_{name}.png")
        grey.save(positives[-1])
        negatives.append(tmp_path / f"neg_{name}.png")
        ImageOps.invert(grey).save(negatives[-1])
    got = classify(clf, positives + negatives)
    for name, labels in zip(NEGATIVE_FILMS, got[: len(NEGATIVE_FILMS)], strict=True):
        assert labels.modality is not None
        assert labels.modality.detail["negative_p"] < 0.8, (name, labels.as_dict())
        assert "polarity_note" not in labels.modality.detail
    assert _sure(got[0], "protocol") and _sure(got[1], "protocol"), [g.as_dict() for g in got[:2]]
    for name, labels in zip(NEGATIVE_FILMS, got[len(NEGATIVE_FILMS) :], strict=True):
        assert labels.modality is not None
        assert "negative" in labels.modality.detail.get("polarity_note", ""), (name, labels.as_dict())
        for tag in ("modality", "protocol", "body_part", "orientation"):
            assert not _sure(labels, tag), (name, tag, labels.as_dict())


def test_a_page_of_text_is_no_sure_radiograph(clf: LocalClassifier, tmp_path: Path) -> None:
    """A consent form scanned in grey: too much ink for the drawing rule, so a radiograph to the
    colour rule; the kind head called it a hand-wrist film, protocol sure (1.00). Dark on light
    is a negative's look: no label of it is sure."""
    page = Image.new("L", (1240, 1754), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=28)
    for i in range(45):
        draw.text(
            (100, 80 + 36 * i),
            f"Consent: orthodontic records, photographs, radiographs {i}",
            fill=0,
            font=font,
            stroke_width=1,
        )
    path = tmp_path / "page.png"
    page.save(path)
    (labels,) = classify(clf, [path])
    assert labels.modality is not None and labels.modality.detail["kind"] != "drawing", labels.as_dict()
    for tag in ("modality", "protocol", "body_part", "orientation"):
        assert not _sure(labels, tag), (tag, labels.as_dict())
