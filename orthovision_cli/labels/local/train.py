"""`orthovision train`: fit linear heads on a user's sorted archive and write a new pack.

Layout of the labelled folder: `<tag>/<value>/**/<image>`, the tag as `modality`, `protocol`,
`body_part` (or any alias `normalise_tag` knows), the value as it should be written:
`protocol/EV01/*.jpg`, `modality/PX/*.tif`, `orientation/90/*.jpg`. A self-supervised
orientation head is learnt from an unlabelled folder of upright images, each turned four ways.

The new pack copies the base pack's models and heads and adds its own, marked `taught`: each is
measured leave-one-out, calibrated on those left-out answers, then refitted on all; the shares of
values and the film-or-digital fact go to the manifest's `taught` section. The classifier adds
all of it to the default evidence (`taught.combine`), never lets it override.
"""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError, ModelPackError, UsageError
from ...inputs.source import SourceImage
from ..model import Orientation, Tag, normalise_tag
from . import rotation, rules
from .augment import mirror_safe
from .classifier import LocalClassifier, load_pack
from .faces import rotate
from .heads import LinearHead, fit_head
from .packs import MANIFEST, file_sha256, read_pack
from .taught import accuracy_floor, calibrate, taught_shares
from .work import PREVIEW_SIDE, to_feature_input

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".tif", ".tiff", ".png", ".jp2", ".j2k", ".bmp"})
MIN_PER_CLASS = 2
TURNS = (0, 90, 180, 270)

Progress = Callable[[str, int, int], None]


def iter_images(root: Path) -> Iterable[Path]:
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            yield p


def canonical_value(tag: Tag, value: str) -> str:
    """Folder names as label values: orientation spelled as `Orientation` prints it."""
    if tag == "orientation":
        return str(Orientation.parse(value.replace("_", "+")))
    return value


def scan_labelled(root: Path) -> dict[Tag, list[tuple[Path, str]]]:
    """{tag: [(image, value)]} from `<tag>/<value>/**/<image>`; unknown tag folders are errors."""
    if not root.is_dir():
        raise UsageError(f"not a folder: {root}", path=root)
    out: dict[Tag, list[tuple[Path, str]]] = {}
    for tag_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        tag = normalise_tag(tag_dir.name)
        if tag is None:
            raise UsageError(
                f"{tag_dir.name!r} is not a tag (use modality, protocol, body_part, orientation)",
                path=tag_dir,
            )
        for value_dir in sorted(p for p in tag_dir.iterdir() if p.is_dir()):
            try:
                value = canonical_value(tag, value_dir.name)
            except ValueError as exc:
                raise UsageError(str(exc), path=value_dir) from exc
            out.setdefault(tag, []).extend((p, value) for p in iter_images(value_dir))
    return out


@dataclass
class HeadReport:
    name: str
    tag: str
    classes: dict[str, int]
    held_out: int
    held_out_correct: int
    skipped: list[str] = field(default_factory=list)

    @property
    def held_out_accuracy(self) -> float | None:
        return self.held_out_correct / self.held_out if self.held_out else None

    def as_dict(self) -> dict[str, Any]:
        acc = self.held_out_accuracy
        return {
            "name": self.name,
            "tag": self.tag,
            "classes": self.classes,
            "held_out": self.held_out,
            "held_out_correct": self.held_out_correct,
            "held_out_accuracy": round(acc, 4) if acc is not None else None,
            "method": "leave-one-out (an image with its turns and mirror left out together; at "
            f"most {MAX_FOLDS} folds)",
            "skipped": self.skipped,
        }


@dataclass
class TrainReport:
    pack: Path
    heads: list[HeadReport]
    unreadable: list[str]
    taught: dict[str, Any] = field(default_factory=dict)  # priors and facts (`taught_shares`)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pack": str(self.pack),
            "heads": [h.as_dict() for h in self.heads],
            "unreadable": self.unreadable,
            "taught": self.taught,
        }


def _features(
    clf: LocalClassifier,
    rgbs: Sequence[np.ndarray],
) -> np.ndarray:
    if clf.features is None:
        raise ModelPackError("the base pack has no feature extractor ('features' model)")
    size = clf.feature_size
    batch = np.stack([to_feature_input(rgb, size) for rgb in rgbs])
    (feats,) = clf.features.run(batch, ["features"])
    return feats


def _previews(
    paths: Sequence[Path], unreadable: list[str], progress: Progress | None, what: str
) -> tuple[list[Path], list[np.ndarray]]:
    kept: list[Path] = []
    rgbs: list[np.ndarray] = []
    for i, p in enumerate(paths):
        try:
            rgbs.append(SourceImage(p, rel=p.name).preview(PREVIEW_SIDE))
            kept.append(p)
        except InputError as exc:
            unreadable.append(f"{p}: {exc.one_line()}")
        if progress:
            progress(what, i + 1, len(paths))
    return kept, rgbs


MAX_FOLDS = 20


def _fit_and_measure(
    name: str, tag: str, x: np.ndarray, y: list[str], seed: int, groups: list[int] | None = None
) -> tuple[LinearHead, HeadReport, dict[str, float]]:
    """Leave-one-out accuracy (one image, or one image with its turns, left out at a time; at most
    MAX_FOLDS folds for a large archive), the calibration those left-out answers give
    (`taught.calibrate`), then the head fitted on everything."""
    counts = Counter(y)
    classes = sorted(counts)
    if groups is None:
        groups = list(range(len(y)))
    names = sorted(set(groups))
    rng = random.Random(seed)
    rng.shuffle(names)
    fold_of = {g: k % MAX_FOLDS for k, g in enumerate(names)}
    oof: list[np.ndarray] = []
    truth: list[int] = []
    for fold in sorted(set(fold_of.values())):
        test = [i for i, g in enumerate(groups) if fold_of[g] == fold]
        train = [i for i, g in enumerate(groups) if fold_of[g] != fold]
        if len({y[i] for i in train}) < 2:
            continue
        head = fit_head(x[train], [y[i] for i in train])
        probs = head.predict_proba(x[test])
        for row, i in zip(probs, test, strict=True):
            full = np.zeros(len(classes))  # a class missing from this fold's training: 0
            for c, q in zip(head.classes, row, strict=True):
                full[classes.index(c)] = q
            oof.append(full)
            truth.append(classes.index(y[i]))
    correct = sum(int(np.argmax(p)) == t for p, t in zip(oof, truth, strict=True))
    temperature, cap = calibrate(np.array(oof).reshape(len(oof), len(classes)), truth)
    final = fit_head(x, y)
    report = HeadReport(name, tag, dict(sorted(counts.items())), len(truth), correct)
    return final, report, {"temperature": temperature, "max_confidence": round(cap, 4)}


def _fit_rotation(
    name: str, looks: list[np.ndarray], groups: list[int], seed: int
) -> tuple[LinearHead, HeadReport]:
    """A rotation head from upright images, each seen at its four turns (`looks[i]`: (4, d)).
    Measured leave-one-image-out with the four-look decision the classifier makes."""
    x = np.concatenate(looks)
    y = [str(Orientation((360 - k) % 360)) for _ in looks for k in TURNS]
    n = len(looks)
    order = sorted(set(groups))
    random.Random(seed).shuffle(order)
    fold_of = {g: k % MAX_FOLDS for k, g in enumerate(order)}
    correct = tested = 0
    for fold in sorted(set(fold_of.values())):
        train = [4 * i + t for i in range(n) if fold_of[groups[i]] != fold for t in range(4)]
        if not train:
            continue
        head = fit_head(x[train], [y[i] for i in train])
        for g in (i for i in range(n) if fold_of[groups[i]] == fold):
            probs = list(head.predict_proba(looks[g]))
            for t in TURNS:
                # The stored picture turned by t; its four looks are the upright turned t + r.
                seen = [probs[((t + r) % 360) // 90] for r in TURNS]
                got, _, _ = rotation.joint(head.classes, seen)
                correct += int(got == (360 - t) % 360)
                tested += 1
    final = fit_head(x, y)
    return final, HeadReport(name, "orientation", dict(sorted(Counter(y).items())), tested, correct)


def train_pack(
    labelled: Path | None,
    out: Path,
    *,
    base: Path | None = None,
    unlabelled: Path | None = None,
    orientation_applies_to: str | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    radiographs: str | None = None,
) -> TrainReport:
    """Write a pack at `out`: the base pack plus heads fitted on `labelled` and `unlabelled`;
    `radiographs` (film or digital), a person's answer for the batch, is kept as its fact."""
    if labelled is None and unlabelled is None:
        raise UsageError("nothing to train on: give a labelled folder or --unlabelled")
    base_pack = read_pack(base)
    clf = load_pack(base_pack.root)
    if out.resolve() == base_pack.root.resolve():
        raise UsageError("the output pack must not be the base pack", path=out)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise UsageError(f"{out} exists and is not a model pack; not overwriting", path=out)
    unreadable: list[str] = []
    reports: list[HeadReport] = []
    new_heads: list[tuple[dict[str, Any], LinearHead]] = []

    data = scan_labelled(labelled) if labelled is not None else {}
    kind_of: dict[Path, str] = {}
    for tag, items in data.items():
        counts = Counter(v for _, v in items)
        small = sorted(v for v, n in counts.items() if n < MIN_PER_CLASS)
        items = [(p, v) for p, v in items if counts[v] >= MIN_PER_CLASS]
        if len({v for _, v in items}) < 2:
            reports.append(HeadReport(f"user-{tag}", tag, dict(counts), 0, 0, skipped=small))
            continue
        kept, rgbs = _previews([p for p, _ in items], unreadable, progress, f"reading {tag}")
        value_of = dict(items)
        y = [value_of[p] for p in kept]
        for p, rgb in zip(kept, rgbs, strict=True):
            kind_of[p] = _kind(clf, rgb)
        kinds = Counter(kind_of[p] for p in kept)
        x = _features(clf, rgbs)
        head, report, calibration = _fit_and_measure(f"user-{tag}", tag, x, y, seed)
        report.skipped = small
        reports.append(report)
        applies = _applies_to(kinds)
        spec = {"tag": tag, "applies_to": applies, "name": f"user-{tag}", "taught": True, **calibration}
        new_heads.append((spec, head))
        if tag == "orientation":
            continue
        # Per-kind rotation heads from the same (upright) images, turned four ways; a mirror
        # doubles them where it keeps the label (never for a sided view).
        for value in sorted(set(y)):
            mine = [rgb for rgb, v in zip(rgbs, y, strict=True) if v == value]
            image_of = list(range(len(mine)))
            if mirror_safe(value):
                mine = mine + [np.ascontiguousarray(a[:, ::-1]) for a in mine]
                image_of = image_of + image_of  # a mirror is left out with its original
            looks = [_features(clf, [rotate(a, t) for t in TURNS]) for a in mine]
            rname = f"user-rotation-{tag}-{value}"
            rhead, rreport = _fit_rotation(rname, looks, image_of, seed)
            reports.append(rreport)
            images, share = len(set(image_of)), rreport.held_out_correct / max(1, rreport.held_out)
            rspec = {
                "tag": "orientation",
                "role": "rotation",
                "family": f"user:{tag}:{value}",
                "when": {"tag": tag, "value": value},
                "applies_to": applies,
                "name": rname,
                "taught": True,
                # Capped at the accuracy its left-out images vouch for (an image's turns and
                # mirror are one piece of evidence, not eight).
                "max_confidence": round(accuracy_floor(round(images * share), images, 4), 4),
            }
            new_heads.append((rspec, rhead))

    if unlabelled is not None:
        paths = list(iter_images(unlabelled))
        kept, rgbs = _previews(paths, unreadable, progress, "reading unlabelled")
        if len(kept) < 4:
            raise UsageError(f"need at least 4 readable images in {unlabelled}", path=unlabelled)
        kinds = Counter(
            rules.image_kind(rules.pixel_stats(rgb, clf.colour_rule), clf.colour_rule)[0] for rgb in rgbs
        )
        xs: list[np.ndarray] = []
        ys: list[str] = []
        groups: list[int] = []
        for gi, rgb in enumerate(rgbs):
            turned = [rotate(rgb, k) for k in (0, 90, 180, 270)]
            xs.append(_features(clf, turned))
            # Turned clockwise by k, the image needs (360 - k) to be upright again.
            ys.extend(str(Orientation((360 - k) % 360)) for k in (0, 90, 180, 270))
            groups.extend([gi] * 4)
            if progress:
                progress("orientation features", gi + 1, len(rgbs))
        x = np.concatenate(xs)
        head, report, calibration = _fit_and_measure("user-orientation", "orientation", x, ys, seed, groups)
        reports.append(report)
        applies = orientation_applies_to or _applies_to(kinds)
        spec = {"tag": "orientation", "applies_to": applies, "name": "user-orientation", "taught": True}
        new_heads.append(({**spec, **calibration}, head))

    def kind(path: Path) -> str:
        if path not in kind_of:
            _, rgbs = _previews([path], unreadable, None, "")
            kind_of[path] = _kind(clf, rgbs[0]) if rgbs else rules.UNSURE
        return kind_of[path]

    taught = taught_shares(data, kind, radiographs)
    if not new_heads and not taught:
        raise UsageError("nothing could be taught: give two or more images of a value")
    _write_pack(base_pack.root, base_pack.manifest, out, new_heads, reports, taught)
    return TrainReport(out, reports, unreadable, taught)


def _kind(clf: LocalClassifier, rgb: np.ndarray) -> str:
    return rules.image_kind(rules.pixel_stats(rgb, clf.colour_rule), clf.colour_rule)[0]


def _applies_to(kinds: Counter[str]) -> str:
    """A head trained only on photographs (or only radiographs) is used only on those."""
    seen = {k for k, n in kinds.items() if n > 0}
    if seen == {rules.PHOTOGRAPH}:
        return rules.PHOTOGRAPH
    if seen == {rules.RADIOGRAPH}:
        return rules.RADIOGRAPH
    return "any"


def _write_pack(
    base_root: Path,
    base_manifest: dict[str, Any],
    out: Path,
    new_heads: list[tuple[dict[str, Any], LinearHead]],
    reports: list[HeadReport],
    taught: dict[str, Any],
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads(json.dumps(base_manifest))
    for spec in manifest.get("models", {}).values():
        _copy(base_root / spec["file"], out / spec["file"])
    names = {spec["name"] for spec, _ in new_heads}
    heads = [h for h in manifest.get("heads", []) if h.get("name") not in names]
    for h in heads:
        _copy(base_root / h["file"], out / h["file"])
    by_name = {r.name: r for r in reports}
    for spec, head in new_heads:
        rel = f"heads/{spec['name']}.npz"
        (out / "heads").mkdir(parents=True, exist_ok=True)
        head.save(out / rel)
        heads.append(
            {
                "role": "tag",
                **spec,
                "file": rel,
                "sha256": file_sha256(out / rel),
                "input": "features",
                "classes": head.classes,
                "measured": by_name[spec["name"]].as_dict(),
            }
        )
    manifest["heads"] = heads
    if taught:
        manifest["taught"] = taught
    else:
        manifest.pop("taught", None)
    manifest["name"] = out.name
    manifest["version"] = f"{base_manifest.get('version', '0')}+{out.name}"
    manifest["base"] = str(base_manifest.get("name", base_root.name))
    notice = base_root / "NOTICE"
    if notice.is_file():
        _copy(notice, out / "NOTICE")
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    same_size = dst.exists() and dst.stat().st_size == src.stat().st_size
    if same_size and file_sha256(dst) == file_sha256(src):
        return
    shutil.copyfile(src, dst)
