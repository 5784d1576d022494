# SPDX-License-Identifier: Apache-2.0
"""Fit the default pack's feature heads on the open images of the shared data folder, measure
them leave-one-source-out, and add them to `models/manifest.json`.

    python models/tools/fit_heads.py [--data ../shared/data] [--cache /tmp/ov-features]
                                     [--no-measure]

Heads (logistic regression on the 1280 MobileNetV2 features, `labels.local.heads`):
- `radiograph_kind`: panoramic, lateral / PA cephalogram, bitewing, periapical, hand-wrist, wrist,
  other limb, chest, mammogram; fitted on every image turned four ways, so the stored rotation
  does not matter;
- `rotation_<family>`: the clockwise turn that shows a radiograph upright, one head per family of
  kinds (panoramic, cephalogram, intraoral radiograph, chest, limb) and one for intraoral
  photographs;
- `grey_photo`: photograph vs greyscale picture, consulted only when the colour rule is unsure
  (a radiograph saved as colour JPEG, a tinted scan, a coloured label);
- `intraoral` (HEAD vs MOUTH) and `intraoral_view` (frontal, right / left buccal, upper / lower
  occlusal).

Every training image is augmented (`labels.local.augment`: crops, scale, gamma, noise, borders,
labels, scanner bed, JPEG; a mirror only where it keeps the label). Features are cached under
--cache, so a rerun costs seconds. The measurement leaves out one source at a time (a source is
one original picture or patient; the eight panoramic tiles cut from one overview image are one
source; chest radiographs in 5 folds of 4), fits on the rest and predicts the left-out source's
original images at 0, 90, 180 and 270 degrees; it is written to the manifest (`heads[].measured`)
and printed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
PACK = HERE.parent
REPO = PACK.parent
sys.path.insert(0, str(REPO))

from orthovision_cli.inputs.source import SourceImage  # noqa: E402
from orthovision_cli.labels.local import radiograph, radiograph_geometry, rules  # noqa: E402
from orthovision_cli.labels.local import radiograph_calibration as rc  # noqa: E402
from orthovision_cli.labels.local.augment import augment, mirror_safe  # noqa: E402
from orthovision_cli.labels.local.faces import rotate  # noqa: E402
from orthovision_cli.labels.local.heads import LinearHead, fit_head  # noqa: E402
from orthovision_cli.labels.local.packs import file_sha256  # noqa: E402
from orthovision_cli.labels.local.photo_labels import DEFAULT_FACE_RULE  # noqa: E402
from orthovision_cli.labels.local.radiograph_augment import (  # noqa: E402
    film_look,
    negative_of,
    pseudo_intraoral,
    source_shift,
)
from orthovision_cli.labels.local.runner import OnnxModel  # noqa: E402
from orthovision_cli.labels.local.work import PREVIEW_SIDE, to_feature_input  # noqa: E402

TURNS = (0, 90, 180, 270)
SEED = 11
MAX_FOLDS = 12
MAX_GROUPS = 30  # more sources than this: merged into MAX_FOLDS folds


@dataclass
class Item:
    path: str
    group: str
    rgb: np.ndarray  # upright
    size: tuple[int, int]
    dpi: float | None
    kind: str | None = None  # radiograph kind
    view: str | None = None  # intraoral photograph view
    body: str | None = None  # HEAD / MOUTH for photographs
    photo: bool = False
    train_only: bool = False
    synthetic: bool = False  # made from another image (never evaluated)


def radiograph_kind(row: dict[str, str]) -> str | None:
    p, view = row["path"], row["view"]
    if "panoramic" in p:
        return "panoramic"
    if "lateral cephalogram" in view:
        return "ceph_lateral"
    if "postero-anterior cephalogram" in view:
        return "ceph_pa"
    if view.startswith("bitewing"):
        return "bitewing"
    if view.startswith("periapical"):
        return "periapical"
    if "hand-wrist" in view:
        return "hand_wrist"
    if "WRI" in p:
        # Paediatric wrist films show the wrist and the hand's base, as a hand-wrist film for
        # skeletal age does: one kind, so that the hand-wrist kind learns from four sources.
        return "hand_wrist"
    if "extremity" in view or "limb" in view:
        return "limb"
    if "chest" in view:
        return "chest"
    if row["modality"] == "MG":
        return "mammogram"
    return None


def intraoral_view(row: dict[str, str]) -> str | None:
    v = row["view"]
    for key, name in (
        ("frontal", "frontal"),
        ("right buccal", "right_buccal"),
        ("left buccal", "left_buccal"),
        ("maxillary occlusal", "upper_occlusal"),
        ("mandibular occlusal", "lower_occlusal"),
    ):
        if v.startswith("intraoral") and key in v:
            return name
    return None


def group_of(path: str) -> str:
    name = Path(path).name
    if "faces_london" in path:
        return "london-" + name.split("_")[0]
    if "sjtu_p" in name:
        return "sjtu-" + name.split("_")[1]
    if "hitl_tile" in name:
        return "hitl"
    if name.startswith("B1893"):
        return "bolton-B1893"
    if "radiographs/chest/" in path:
        return f"chest-fold{int(hashlib.sha256(name.encode()).hexdigest(), 16) % 5}"
    if name.startswith("Calc-Test"):
        return "ddsm-" + name.split("_")[2]
    return name


def upright_turn(row: dict[str, str]) -> int:
    """Clockwise turn that makes the stored image upright, from labels.csv's note."""
    if row["upright"] != "no":
        return 0
    note = row["note"]
    for deg in (270, 180, 90):
        if f"{deg} degrees" in note:
            return deg
    raise SystemExit(f"cannot read the turn of {row['path']}: {note}")


def load_items(data: Path) -> list[Item]:
    from PIL import Image

    with (data / "labels.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    readme = (data / "README.md").read_text(encoding="utf-8")
    train_only_names = ["panoramic_radiograph_orthopantomogram", "hitl_tile"]
    assert "train/eval only" in readme
    items: list[Item] = []
    for r in rows:
        p = r["path"]
        if p.startswith("drawings/") or "starshot" in p:
            continue
        src = data / p
        rgb = rotate(SourceImage(src, rel=p).preview(PREVIEW_SIDE), upright_turn(r))
        with Image.open(src) as im:
            size = im.size
            dpi_info = im.info.get("dpi")
        dpi = float(dpi_info[0]) if dpi_info else None
        photo = r["modality"] == "XC"
        it = Item(
            p,
            group_of(p),
            rgb,
            size,
            dpi,
            photo=photo,
            train_only=any(n in p for n in train_only_names),
        )
        if photo:
            it.body = r["body_part"]
            it.view = intraoral_view(r)
        else:
            it.kind = radiograph_kind(r)
            if it.kind is None:
                continue
        items.append(it)
        if it.kind == "hand_wrist":
            # The film holds an oblique view (left) and the posteroanterior hand-wrist view
            # (right half): the right half alone is the classic hand-wrist radiograph.
            w = rgb.shape[1]
            half = Item(p + "#right-half", it.group, rgb[:, w // 2 :], size, None, kind="hand_wrist")
            items.append(half)
    return items


class FeatureCache:
    def __init__(self, model: OnnxModel, root: Path):
        self.model = model
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.runs = 0

    def features(self, key: str, make: Any) -> np.ndarray:
        """(n, 1280) features of the images `make()` returns, cached under `key`."""
        f = self.root / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".npy")
        if f.is_file():
            return np.load(f)
        rgbs = make()
        x = np.stack([to_feature_input(a, 224) for a in rgbs])
        (feats,) = self.model.run(x, ["features"])
        np.save(f, feats)
        self.runs += len(rgbs)
        return np.asarray(feats)


def variants(
    cache: FeatureCache, it: Item, n: int, label: str, greyscale: bool, tag: str, negative: bool = False
) -> np.ndarray:
    """Features (n+1, 4, 1280): the original and n augmented variants, each turned 4 ways.
    Radiographs (tag "rad") also get a new scanner's look (`source_shift`) and intraoral films
    a film's look (`film_look`) before the common augmentation. `negative`: the same variants
    stored as a negative (bone dark), as some exports and sensor programs write them."""

    def make() -> list[np.ndarray]:
        rng = random.Random(f"{SEED}:{tag}:{it.path}")
        out: list[np.ndarray] = []
        for v in range(n + 1):
            a = it.rgb
            if v > 0:
                if tag == "rad" and label in radiograph.INTRAORAL_KINDS and rng.random() < 0.5:
                    a = film_look(a, rng)
                if tag == "rad" and rng.random() < 0.5:
                    a = source_shift(a, rng)
                a = augment(a, rng, mirror_ok=mirror_safe(label), greyscale=greyscale)
            if negative:
                a = negative_of(a)
            out.extend(rotate(a, t) for t in TURNS)
        return out

    version = ("v3neg" if negative else "v3") if tag == "rad" else "v2"
    feats = cache.features(f"{version}:{tag}:{it.path}:{n}:{label}:{greyscale}", make)
    return feats.reshape(n + 1, 4, -1)


# Periapical-like and bitewing-like cuts of each panoramic radiograph (`pseudo_intraoral`): the
# intraoral kinds have three open films; the cuts teach the head teeth with roots, and crowns of
# both jaws, from three more sources (a cut belongs to its panoramic's source).
PSEUDO_PER_PANORAMIC = {"periapical": 3, "bitewing": 2}


def add_pseudo_intraoral(items: list[Item]) -> list[Item]:
    out = list(items)
    for it in items:
        if it.kind != "panoramic" or it.synthetic:
            continue
        rng = random.Random(f"{SEED}:pseudo:{it.path}")
        for kind, n in PSEUDO_PER_PANORAMIC.items():
            for j in range(n):
                rgb = pseudo_intraoral(it.rgb, rng, kind)
                out.append(
                    Item(
                        f"{it.path}#{kind}{j}",
                        it.group,
                        rgb,
                        (rgb.shape[1], rgb.shape[0]),
                        None,
                        kind=kind,
                        synthetic=True,
                        train_only=it.train_only,
                    )
                )
    return out


def radiograph_sets(
    items: list[Item], cache: FeatureCache
) -> tuple[Set, dict[str, Set], list[tuple[np.ndarray, str, int, bool, int]]]:
    """The kind head's samples, the rotation heads' samples per radiograph family, and the
    radiograph samples the grey_photo head takes (one variant in three). Originals of real
    films are the evaluated samples; synthetic cuts never are."""
    rads = [i for i, it in enumerate(items) if it.kind]
    kcount = Counter(items[i].kind for i in rads if not items[i].synthetic)
    nk = per_class_n(Counter({k: v for k, v in kcount.items() if k}), 90)
    kind_set = Set.empty()
    rot_sets: dict[str, Set] = defaultdict(Set.empty)
    grey: list[tuple[np.ndarray, str, int, bool, int]] = []
    for i in rads:
        it = items[i]
        assert it.kind
        fam = radiograph.KINDS[it.kind].orientation_family
        n = 2 if it.synthetic else nk[it.kind]
        v = variants(cache, it, n, it.kind, True, "rad")
        for a in range(v.shape[0]):
            orig = a == 0 and not it.synthetic
            for t, turn in enumerate(TURNS):
                kind_set.add(v[a, t], it.kind, it.group, orig, i, turn)
                if fam and not it.synthetic:
                    rot_sets[fam].add(v[a, t], correction(turn), it.group, orig, i, turn)
                if a % 3 == 0:
                    grey.append((v[a, t], it.group, i, orig, turn))
    return kind_set, rot_sets, grey


# Variants per radiograph for the polarity head (`radiograph_polarity`): each as stored and as
# a negative, so the head learns the polarity and nothing else about the film.
POLARITY_VARIANTS = 6


def polarity_set(items: list[Item], cache: FeatureCache) -> Set:
    """Positive (as radiographs are shown: bone bright) or negative, on the four turns of every
    radiograph's first variants and of the same variants inverted."""
    s = Set.empty()
    for i, it in enumerate(items):
        if not it.kind:
            continue
        # The panoramic cuts (`pseudo_intraoral`) show the head small films; never evaluated.
        n = 1 if it.synthetic else POLARITY_VARIANTS
        for negative, label in ((False, "positive"), (True, "negative")):
            v = variants(cache, it, n, it.kind, True, "rad", negative=negative)
            for a in range(v.shape[0]):
                for t, turn in enumerate(TURNS):
                    s.add(v[a, t], label, it.group, a == 0 and not it.synthetic, i, turn)
    return s


@dataclass
class Set:
    """Samples for one head: x, y, group, whether it is an original (not augmented) image,
    and the item index (for priors at evaluation)."""

    x: list[np.ndarray]
    y: list[str]
    g: list[str]
    orig: list[bool]
    item: list[int]
    turn: list[int]

    @classmethod
    def empty(cls) -> Set:
        return cls([], [], [], [], [], [])

    def add(self, x: np.ndarray, y: str, g: str, orig: bool, item: int, turn: int) -> None:
        self.x.append(x)
        self.y.append(y)
        self.g.append(g)
        self.orig.append(orig)
        self.item.append(item)
        self.turn.append(turn)

    def xa(self) -> np.ndarray:
        return np.stack(self.x)


def facing_samples(items: list[Item], cache: FeatureCache) -> Set:
    """Which way an upright lateral cephalogram faces: the films and their mirror images."""
    facing_set = Set.empty()
    for i, it in enumerate(items):
        if it.kind != "ceph_lateral":
            continue
        # Upright, the open films face right except the Bolton-Brush treerez scan (faces left).
        facing = "left" if "treerez" in it.path else "right"
        other = "right" if facing == "left" else "left"
        mirrored = Item(it.path + "#mirror", it.group, np.ascontiguousarray(it.rgb[:, ::-1]), it.size, None)
        for src_item, label in ((it, facing), (mirrored, other)):
            v = variants(cache, src_item, 20, f"facing_{label}", True, "facing")
            for a in range(v.shape[0]):
                facing_set.add(v[a, 0], label, it.group, a == 0, i, 0)
    return facing_set


def correction(turned_by: int) -> str:
    """An upright image turned clockwise by t needs (360 - t) % 360 to be upright again."""
    return str((360 - turned_by) % 360)


def per_class_n(counts: Counter[str], target: int, lo: int = 3, hi: int = 60) -> dict[str, int]:
    return {k: max(lo, min(hi, math.ceil(target / c) - 1)) for k, c in counts.items()}


HEAD_CACHE: list[Path] = []  # where fitted heads are kept (set by main; fits are deterministic)


def fit_cached(x: np.ndarray, y: list[str], *, l2: float, iterations: int) -> LinearHead:
    """fit_head, kept under the feature cache by a hash of its inputs: the leave-one-source-out
    heads of fit_heads.py are the same ones check_open_labels.py --loso needs."""
    if not HEAD_CACHE:
        return fit_head(x, y, l2=l2, iterations=iterations)
    h = hashlib.sha256(np.ascontiguousarray(x, np.float32).tobytes())
    h.update(json.dumps([y, l2, iterations]).encode())
    f = HEAD_CACHE[0] / f"head-{h.hexdigest()[:24]}.npz"
    if f.is_file():
        return LinearHead.load(f)
    head = fit_head(x, y, l2=l2, iterations=iterations)
    f.parent.mkdir(parents=True, exist_ok=True)
    head.save(f)
    return head


def logo(
    s: Set,
    *,
    l2: float,
    iterations: int,
    post: Any = None,
    only_turn0: bool = False,
    records: list[tuple[int, list[str], np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Leave one source out (sources merged into at most MAX_FOLDS folds, so that the 60 people
    of the face sets cost 12 fits, not 60); predictions on the left-out originals."""
    x = s.xa()
    preds: list[tuple[str, str, float, int]] = []
    names = sorted(set(s.g))
    fold = {g: g for g in names}
    if len(names) > MAX_GROUPS:
        fold = {g: f"fold{int(hashlib.sha256(g.encode()).hexdigest(), 16) % MAX_FOLDS}" for g in names}
    sg = [fold[g] for g in s.g]
    for g in sorted(set(sg)):
        train = [i for i in range(len(s.y)) if sg[i] != g]
        test = [i for i in range(len(s.y)) if sg[i] == g and s.orig[i] and (not only_turn0 or s.turn[i] == 0)]
        if not test or len({s.y[i] for i in train}) < 2:
            continue
        head = fit_cached(x[train], [s.y[i] for i in train], l2=l2, iterations=iterations)
        p = head.predict_proba(x[test])
        for j, i in enumerate(test):
            if records is not None:
                records.append((i, head.classes, p[j]))
            probs = p[j] if post is None else post(head.classes, p[j], i)
            k = int(np.argmax(probs))
            preds.append((s.y[i], head.classes[k], float(probs[k]), i))
    return summarise(preds)


def summarise(preds: list[tuple[str, str, float, int]]) -> dict[str, Any]:
    n = len(preds)
    correct = sum(t == p for t, p, _, _ in preds)
    out: dict[str, Any] = {
        "method": "leave-one-source-out; predictions on the left-out source's original images "
        "at 0/90/180/270 degrees",
        "images": n,
        "correct": correct,
        "accuracy": round(correct / max(1, n), 4),
    }
    for thr in (0.8, 0.9, 0.95):
        acc = [(t, p) for t, p, c, _ in preds if c >= thr]
        out[f"at_{thr}"] = {
            "accepted": len(acc),
            "right": sum(t == p for t, p in acc),
        }
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for t, p, _, _ in preds:
        per[t][1] += 1
        per[t][0] += int(t == p)
    out["per_class"] = {k: f"{v[0]}/{v[1]}" for k, v in sorted(per.items())}
    wrong = Counter(f"{t}->{p}" for t, p, _, _ in preds if t != p)
    out["confusions"] = dict(wrong.most_common(8))
    return out


def joint_rotation(s: Set, records: list[tuple[int, list[str], np.ndarray]]) -> dict[str, Any]:
    """The rotation decided from all four turns of the stored picture (`rotation.joint`), as the
    classifier does when the single look is unsure."""
    from orthovision_cli.labels.local.rotation import joint

    by_item: dict[int, dict[int, np.ndarray]] = defaultdict(dict)
    classes: list[str] = []
    for i, cls, probs in records:
        by_item[s.item[i]][s.turn[i]] = probs
        classes = cls
    preds: list[tuple[str, str, float, int]] = []
    for item, views in by_item.items():
        if len(views) < 4:
            continue
        for t in TURNS:
            # The stored picture is the upright one turned by t; turning it by r more gives the
            # upright one turned by t + r.
            looks = [views[(t + r) % 360] for r in TURNS]
            c, conf, _ = joint(classes, looks)
            preds.append((correction(t), str(c), conf, item))
    return summarise(preds)


Record = tuple[int, list[str], np.ndarray]


def four_looks(s: Set, records: list[Record]) -> list[Record]:
    """The kind head's left-out predictions as the classifier makes them: each picture's
    probabilities averaged over its four turns (`radiograph_labels`), one record per turn as
    before (a picture missing a turn keeps its own)."""
    by_item: dict[int, list[np.ndarray]] = defaultdict(list)
    for i, _cls, probs in records:
        by_item[s.item[i]].append(probs)
    out = []
    for i, cls, probs in records:
        looks = by_item[s.item[i]]
        out.append((i, cls, np.mean(looks, axis=0) if len(looks) == len(TURNS) else probs))
    return out


def polarity_gate(s: Set, records: list[Record]) -> dict[str, Any]:
    """The polarity head's left-out answers as the classifier uses them: the median P(negative)
    over a picture's four turns, at least `NEGATIVE_DOUBT` sends it to a person; per picture
    (as stored and inverted), how many of each are sent."""
    from orthovision_cli.labels.local.radiograph_labels import NEGATIVE_DOUBT

    by: dict[tuple[int, str], list[float]] = defaultdict(list)
    for i, cls, probs in records:
        by[(s.item[i], s.y[i])].append(float(probs[cls.index("negative")]))
    out: dict[str, Any] = {"threshold": NEGATIVE_DOUBT}
    for label in ("positive", "negative"):
        meds = [float(np.median(v)) for (_, y), v in by.items() if y == label and len(v) == len(TURNS)]
        out[label] = f"{sum(m >= NEGATIVE_DOUBT for m in meds)}/{len(meds)} to a person"
    return out


GEOMETRY: dict[str, radiograph_geometry.Geometry] = {}  # by item path: measured once


def calib_record(s: Set, items: list[Item], rec: tuple[int, list[str], np.ndarray]) -> rc.Record:
    i, classes, probs = rec
    it = items[s.item[i]]
    geo = GEOMETRY.get(it.path)
    if geo is None:
        geo = GEOMETRY[it.path] = radiograph_geometry.geometry(it.rgb, it.size, it.dpi)
    return rc.Record(s.y[i], classes, probs, geo)


def fit_calibration(
    s: Set, items: list[Item], records: list[tuple[int, list[str], np.ndarray]]
) -> dict[str, Any]:
    """The kind head's temperatures from left-out predictions (`radiograph_calibration`)."""
    return rc.as_spec(rc.fit_calibration([calib_record(s, items, r) for r in records]))


def kind_tags(
    s: Set, items: list[Item], records: list[tuple[int, list[str], np.ndarray]], nested: bool = True
) -> dict[str, Any]:
    """What the classifier writes from the left-out kind predictions, per true kind and tag:
    right, and right and sure (>= 0.8) beside wrong and sure. `nested`: each source's
    predictions calibrated by temperatures fitted without that source (else on all)."""
    by_group: dict[str, list[tuple[int, list[str], np.ndarray]]] = defaultdict(list)
    for r in records:
        by_group[s.g[r[0]]].append(r)
    calib_all = radiograph.Calibration.from_spec(fit_calibration(s, items, records)) if not nested else None
    per: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0]))
    sure_wrong: list[str] = []
    for g, recs in sorted(by_group.items()):
        calib = calib_all
        if calib is None:
            others = [r for r in records if s.g[r[0]] != g]
            calib = radiograph.Calibration.from_spec(fit_calibration(s, items, others))
        for r in recs:
            kind, tags = rc.tags(calib_record(s, items, r), calib)
            for tag, ok, conf in tags:
                c = per[s.y[r[0]]][tag]
                c[0] += 1
                c[1] += ok
                c[2] += ok and conf >= 0.8
                c[3] += (not ok) and conf >= 0.8
                if not ok and conf >= 0.8:
                    sure_wrong.append(
                        f"{items[s.item[r[0]]].path} turned {s.turn[r[0]]}: {tag} ({kind} {conf:.2f})"
                    )
    out: dict[str, Any] = {
        k: {t: "{1}/{0} right, {2} of them sure, {3} wrong and sure".format(*v) for t, v in tags.items()}
        for k, tags in sorted(per.items())
    }
    out["sure_wrong"] = sure_wrong
    return out


# Path prefix under shared/data -> (licence, attribution), from the shared README.
SOURCES: list[tuple[str, str, str]] = [
    (
        "photos/faces_london/",
        "CC BY 4.0",
        "DeBruine L. & Jones B. (2017) Face Research Lab London Set, doi:10.6084/m9.figshare.5047666.v5",
    ),
    (
        "photos/faces_canada/",
        "CC BY 4.0",
        "DeBruine L. & Jones B., Face Research Lab Canada 2003 set, doi:10.6084/m9.figshare.4220517.v1",
    ),
    (
        "photos/intraoral/sjtu_",
        "MIT",
        "(c) 2023 CHEN Yizhou, GitHub SJTUzhou/3D-Teeth-Reconstruction-from-Five-Intra-oral-Images",
    ),
    ("photos/intraoral/sample_", "MIT", "(c) 2021 Toni Magni, GitHub open-ortho/dicom4ortho"),
    (
        "photos/intraoral/partial_arch/",
        "CC BY 4.0",
        "Chaudhary et al., Teeth or Dental image dataset, Mendeley Data 6zsnhrds9t v1",
    ),
    (
        "radiographs/chest/",
        "CC BY 3.0",
        "COVID-19 Image Repository, Hannover Medical School, doi:10.6084/m9.figshare.12275009",
    ),
    (
        "radiographs/musculoskeletal/IMG",
        "CC BY 4.0",
        "Abedeen I. et al., FracAtlas, Sci Data 10:521 (2023), doi:10.6084/m9.figshare.22363012",
    ),
    (
        "radiographs/musculoskeletal/",
        "CC BY 4.0",
        "Nagy E. et al., GRAZPEDWRI-DX, Sci Data 9:222 (2022), doi:10.6084/m9.figshare.14825193",
    ),
    ("radiographs/dental/bitewing.png", "MIT", "(c) 2024 nnistelrooij, GitHub nnistelrooij/bitewings"),
    (
        "radiographs/dental/bitewing_film.jpg",
        "CC BY-SA 3.0",
        "Dr. Jeffrey Cross, DDS, Wikimedia Commons File:ZELLFAZE_MN01_MP08_010.JPG",
    ),
    (
        "radiographs/dental/periapical_film_photo.jpg",
        "CC BY-SA 3.0",
        "Bin im Garten, Wikimedia Commons File:Dental_X-ray_2012_PD_03.JPG",
    ),
    (
        "film_scans/Calc-Test",
        "CC BY 3.0",
        "Sawyer-Lee R. et al., CBIS-DDSM, TCIA doi:10.7937/K9/TCIA.2016.7O02S9CY",
    ),
    ("film_scans/bfd9000/", "MIT", "(c) 2023 Open-Ortho, GitHub open-ortho/edu.case.BFD9000"),
    ("radiographs/ceph/B1893", "MIT", "(c) 2021 Open-Ortho, GitHub open-ortho/dcm4ceph"),
    (
        "radiographs/ceph/fernroentgenseitenbild.jpg",
        "CC BY-SA 3.0",
        "Segelnistcool, Wikimedia Commons File:Fernröntgenseitenbild.jpg",
    ),
    (
        "radiographs/ceph/landmarks_26points.jpg",
        "CC BY 4.0",
        "figure of Learning Cephalometric Landmarks, Bioengineering 2022, PMC9687964",
    ),
    (
        "radiographs/panoramic/basic_panoramic_radiograph.jpg",
        "CC BY 3.0",
        "Coronation Dental Specialty Group, Wikimedia Commons File:Basic_panoramic_radiograph.jpg",
    ),
    (
        "radiographs/panoramic/panoramic_radiograph_orthopantomogram.jpg",
        "CC BY-SA 2.0, train/eval only",
        "Wikimedia Commons File:Panoramic_radiograph_-_Orthopantomogram.jpg",
    ),
    (
        "radiographs/panoramic/hitl_tile",
        "CC0 1.0, train/eval only",
        "Humans in the Loop, Teeth Segmentation on dental X-ray images (2023)",
    ),
]
NOTICE_START = "--- images the feature heads were fitted on (written by models/tools/fit_heads.py) ---"
NOTICE_END = "--- end of the list ---"


def notice_section(sources: dict[str, list[str]]) -> str:
    """Every image any head was fitted on, by source, with licence and attribution. The images
    themselves are not redistributed in the pack."""
    heads_of: dict[str, list[str]] = defaultdict(list)
    for head, paths in sources.items():
        for p in paths:
            heads_of[p].append(head)
    lines = [NOTICE_START]
    for prefix, licence, attribution in SOURCES:
        mine = sorted(p for p in heads_of if p.startswith(prefix))
        if not mine:
            continue
        lines.append(f"{attribution}; licence: {licence}")
        for p in mine:
            heads_of.pop(p)
            lines.append(f"  {p}  [{', '.join(sorted(sources_heads(sources, p)))}]")
    if heads_of:
        raise SystemExit(f"no licence known for {sorted(heads_of)}")
    lines.append(NOTICE_END)
    return "\n".join(lines) + "\n"


def sources_heads(sources: dict[str, list[str]], path: str) -> list[str]:
    return [h for h, paths in sources.items() if path in paths]


def write_notice(sources: dict[str, list[str]]) -> None:
    notice = PACK / "NOTICE"
    text = notice.read_text(encoding="utf-8")
    section = notice_section(sources)
    if NOTICE_START in text:
        head, rest = text.split(NOTICE_START, 1)
        tail = rest.split(NOTICE_END, 1)[1].lstrip("\n")
        text = head + section + "\n" + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    notice.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/ov-features"))
    ap.add_argument("--no-measure", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated head names to fit")
    args = ap.parse_args(argv)
    t0 = time.time()
    manifest_path = PACK / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    model = OnnxModel(PACK / manifest["models"]["features"]["file"], "image", max_batch=16)
    cache = FeatureCache(model, args.cache)
    HEAD_CACHE[:] = [args.cache / "heads"]
    items = load_items(args.data)
    print(f"{len(items)} items read in {time.time() - t0:.0f}s", flush=True)
    only = set(filter(None, args.only.split(",")))

    # --- radiograph kinds and rotations ---------------------------------------------------
    items = add_pseudo_intraoral(items)
    kind_set, rot_sets, grey_rads = radiograph_sets(items, cache)
    grey_set = Set.empty()
    for x, group, i, orig, turn in grey_rads:
        grey_set.add(x, "greyscale", group, orig, i, turn)
    print(f"radiograph features: {len(kind_set.y)} ({cache.runs} new) {time.time() - t0:.0f}s")

    # --- photographs ------------------------------------------------------------------------
    body_set = Set.empty()
    view_set = Set.empty()
    for i, it in enumerate(items):
        if not it.photo:
            continue
        n = 24 if it.view else (8 if it.body == "MOUTH" else 2)
        label = it.view or it.body or "photo"
        v = variants(cache, it, n, label, False, "photo")
        for a in range(v.shape[0]):
            for t, turn in enumerate(TURNS):
                body_set.add(v[a, t], it.body or "HEAD", it.group, a == 0, i, turn)
                if a % 2 == 0:
                    grey_set.add(v[a, t], "photograph", it.group, a == 0, i, turn)
                if it.body == "MOUTH":
                    rot_sets["intraoral_photo"].add(v[a, t], correction(turn), it.group, a == 0, i, turn)
                if it.view and turn == 0:
                    view_set.add(v[a, t], it.view, it.group, a == 0, i, turn)
    print(f"photo features done ({cache.runs} new) {time.time() - t0:.0f}s", flush=True)

    # --- which way a lateral cephalogram faces: the upright film and its mirror image ---------
    facing_set = facing_samples(items, cache)

    # Rest vs smile: models/tools/fit_smile.py (mouth width and teeth shown, leave-one-person-out),
    # run after this script by rebuild.sh; listed here for NOTICE.
    smile_paths = sorted(it.path for it in items if "/faces_" in it.path)

    geo = {i: radiograph_geometry.geometry(it.rgb, it.size, it.dpi) for i, it in enumerate(items) if it.kind}

    def kind_post(classes: list[str], p: np.ndarray, idx: int) -> np.ndarray:
        return radiograph.combine(classes, p, geo[kind_set.item[idx]])

    fits: dict[str, tuple[Set, float, int, Any, dict[str, Any]]] = {
        "radiograph_kind": (
            kind_set,
            0.05,
            250,
            kind_post,
            {"role": "radiograph_kind", "applies_to": "radiograph"},
        ),
        "grey_photo": (grey_set, 0.05, 250, None, {"role": "grey_photo", "applies_to": "any"}),
        "intraoral": (
            body_set,
            0.05,
            250,
            None,
            {"role": "tag", "tag": "body_part", "applies_to": "photograph"},
        ),
        "intraoral_view": (
            view_set,
            0.05,
            250,
            None,
            {"role": "intraoral_view", "applies_to": "photograph"},
        ),
    }
    fits["radiograph_polarity"] = (
        polarity_set(items, cache),
        0.05,
        250,
        None,
        {
            "role": "radiograph_polarity",
            "applies_to": "radiograph",
            "labels": "positive: bone bright, as radiographs are shown; negative: an inverted picture",
        },
    )
    fits["ceph_facing"] = (
        facing_set,
        0.05,
        250,
        None,
        {
            "role": "ceph_facing",
            "applies_to": "radiograph",
            "labels": "upright lateral cephalogram: the face toward the image's right or left",
        },
    )
    for fam, s in rot_sets.items():
        applies = "photograph" if fam == "intraoral_photo" else "radiograph"
        fits[f"rotation_{fam}"] = (
            s,
            0.05,
            250,
            None,
            {"role": "rotation", "family": fam, "applies_to": applies},
        )

    heads_dir = PACK / "heads"
    heads_dir.mkdir(exist_ok=True)
    sources: dict[str, list[str]] = {}
    new_specs: dict[str, dict[str, Any]] = {}
    for name, (s, l2, iters, post, spec) in fits.items():
        if only and name not in only:
            continue
        used = sorted({items[i].path.split("#")[0] for i in s.item})
        sources[name] = used
        measured: dict[str, Any] = {}
        if not args.no_measure:
            recs: list[tuple[int, list[str], np.ndarray]] = []
            measured = logo(s, l2=l2, iterations=iters, post=post, records=recs)
            if name == "radiograph_kind":
                recs = four_looks(s, recs)
                calibration = fit_calibration(s, items, recs)
                print("calibration", json.dumps(calibration), flush=True)
                measured["calibration"] = calibration
                measured["tags"] = kind_tags(s, items, recs)
                spec = {**spec, **calibration}
            if name == "radiograph_polarity":
                measured["four_looks"] = polarity_gate(s, recs)
            if name.startswith("rotation_"):
                four = joint_rotation(s, recs)
                measured["four_looks"] = four
                print(name, "four looks", json.dumps(four))
                at = four["at_0.8"]
                weak = four["accuracy"] < 0.95 or at["right"] < 0.99 * at["accepted"]
                # An upper periapical is shown crowns down, a lower one crowns up: 0 and 180
                # cannot be told from the film alone.
                weak = weak or spec.get("family") == "intraoral_radiograph"
                # A family whose four-look answer was not right often enough never passes
                # without review.
                spec = {**spec, "max_confidence": 0.75 if weak else 1.0}
            print(name, json.dumps(measured), f"{time.time() - t0:.0f}s", flush=True)
        head: LinearHead = fit_head(s.xa(), s.y, l2=l2, iterations=iters)
        head.save(heads_dir / f"{name}.npz")
        new_specs[name] = {
            "name": name,
            **spec,
            "file": f"heads/{name}.npz",
            "sha256": file_sha256(heads_dir / f"{name}.npz"),
            "input": spec.get("input", "features"),
            "classes": head.classes,
            "trained_on": f"{len(used)} open images of ../shared/data, listed in NOTICE",
            "training_samples": len(s.y),
            "measured": measured,
        }
    if not only or "smile" in only:
        sources["smile"] = smile_paths
    heads = [h for h in manifest.get("heads", []) if h["name"] not in new_specs]
    order = ["intraoral", "smile"]
    heads = sorted(heads, key=lambda h: order.index(h["name"]) if h["name"] in order else 9)
    for name, spec in new_specs.items():
        old = next((h for h in manifest.get("heads", []) if h["name"] == name), None)
        if old and not spec["measured"]:
            spec["measured"] = old.get("measured", {})
            if "max_confidence" in old:
                spec["max_confidence"] = old["max_confidence"]
        if name == "intraoral":
            spec["skip_when_face"] = False
            spec["labels"] = "HEAD: facial photograph; MOUTH: intraoral photograph"
        heads.append(spec)
    manifest["heads"] = heads
    manifest.setdefault("rules", {})["modality_colour"] = dict(rules.DEFAULT_COLOUR_RULE)
    manifest["rules"]["faces"] = dict(DEFAULT_FACE_RULE)
    # Meanings and codes of every value the pack can now emit (build_manifest's table).
    sys.path.insert(0, str(HERE))
    from build_manifest import label_map

    manifest["labels"] = label_map()
    manifest["description"] = (
        "orthovision-cli default pack: photograph vs radiograph, radiograph kinds (modality, "
        "protocol, body part), orientation (faces, radiographs, intraoral photographs), "
        "extraoral and intraoral views, name hints"
    )
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    trained = HERE / "trained_on.json"
    if only and trained.is_file():
        sources = {**json.loads(trained.read_text(encoding="utf-8")), **sources}
    trained.write_text(json.dumps(sources, indent=1) + "\n", encoding="utf-8")
    write_notice(sources)
    print(f"wrote {manifest_path} in {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
