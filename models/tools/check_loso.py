# SPDX-License-Identifier: Apache-2.0
"""Radiographs end to end, leave-one-source-out (`check_open_labels.py --loso`).

For each source of the open radiographs (one original picture or patient; fit_heads.py's
groups): the kind head, the rotation heads of the source's families and the facing head are
fitted on every other source (augmented as fit_heads.py does), the kind head's calibration is
fitted on the other sources' left-out predictions only, and the real classifier (`load_pack`
on a pack holding those heads) labels the source's films turned 0, 90, 180 and 270 degrees
(PNG copies under neutral names, keeping the resolution the file states).

Per kind and tag: right (the value, whatever the confidence), right-and-sure (right and at
least the default threshold, 0.8, so written without review) and wrong-and-sure, against
labels.csv (the protocol from the kind, for kinds that have one; the orientation for films
labelled upright). A kind with one source can be recognised only through what other sources
teach (periapical from the bitewings and the panoramic cuts).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
PACK = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(PACK.parent))

import fit_heads as fh  # noqa: E402
from check_open_labels import fact_of  # noqa: E402

from orthovision_cli.defaults import DEFAULT_MIN_CONFIDENCE  # noqa: E402
from orthovision_cli.inputs.source import SourceImage  # noqa: E402
from orthovision_cli.labels.facts import apply_radiographs  # noqa: E402
from orthovision_cli.labels.local import load_pack, radiograph  # noqa: E402
from orthovision_cli.labels.local.heads import LinearHead  # noqa: E402
from orthovision_cli.labels.local.packs import file_sha256  # noqa: E402
from orthovision_cli.labels.local.runner import OnnxModel  # noqa: E402
from orthovision_cli.labels.policy import uncertain_tags  # noqa: E402

TAGS = ("modality", "body_part", "protocol", "orientation")
L2, ITERATIONS = 0.05, 250


def fold_pack(
    root: Path, manifest: dict[str, Any], heads: dict[str, tuple[LinearHead, dict[str, Any]]]
) -> Path:
    """The default pack copied once into `root` (the pack reader refuses links that lead out
    of it), with `heads` replaced and every other head back to the default pack's."""
    if not (root / "heads").is_dir():
        (root / "heads").mkdir(parents=True)
        for f in PACK.iterdir():
            if f.is_file() and (f.suffix == ".onnx" or f.name == "NOTICE"):
                shutil.copyfile(f, root / f.name)
    specs = []
    for spec in manifest["heads"]:
        name = spec["name"]
        if name in heads:
            head, extra = heads[name]
            head.save(root / spec["file"])
            spec = {**spec, **extra, "classes": head.classes}
        else:
            shutil.copyfile(PACK / spec["file"], root / spec["file"])
        specs.append({**spec, "sha256": file_sha256(root / spec["file"])})
    (root / "manifest.json").write_text(json.dumps({**manifest, "heads": specs}), encoding="utf-8")
    return root


def truth_of(row: dict[str, str], kind: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    if row["modality"]:
        out["modality"] = set(row["modality"].split("|"))
    if row["body_part"]:
        out["body_part"] = set(row["body_part"].split("|"))
    protocol = radiograph.KINDS[kind].protocol
    if protocol:  # a limb film or a mammogram has no protocol to write
        out["protocol"] = {protocol}
    return out


def scanner_shift(im: Image.Image, shift: str) -> Image.Image:
    """The picture as another scanner or export would store it (`--shift`): a contrast curve
    (gamma 0.5 or 2, darkened to 60 %, washed out into 60-175, equalised), a negative (`invert`:
    bone dark) or a small export (`small0.2`: 20 % of each side). A 16-bit file stays 16-bit
    (its depth is a fact the classifier reads); colour stays colour."""
    if shift.startswith("small"):
        k = float(shift[len("small") :])
        size = (max(16, round(im.width * k)), max(16, round(im.height * k)))
        return im.resize(size, Image.Resampling.LANCZOS)
    if shift == "equalize":
        return ImageOps.equalize(im) if im.mode in ("L", "RGB") else im
    top = 65535.0 if im.mode not in ("L", "RGB") else 255.0
    a = np.asarray(im, np.float64) / top
    curves = {
        "gamma0.5": lambda x: x**0.5,
        "gamma2": lambda x: x**2,
        "dark": lambda x: 0.6 * x,
        "flat": lambda x: (60 + 115 * x) / 255,
        "invert": lambda x: 1.0 - x,
    }
    if shift not in curves:
        raise SystemExit(f"--shift: {shift!r} is not one of {sorted(curves)}, equalize, smallK")
    out = np.clip(curves[shift](np.clip(a, 0, 1)) * top, 0, top)
    return Image.fromarray(out.astype(np.uint8 if top == 255.0 else np.uint16))


def run_loso(
    data: Path, cache_dir: Path, as_json: bool, radiographs: str | None = None, shift: str | None = None
) -> int:
    """`radiographs`: None (no batch fact), film, digital, or source (each source's own, as a
    person answers once per folder: issue 20). `shift`: the left-out source's films as another
    scanner would store them (`scanner_shift`); the heads never see the shift."""
    import csv

    manifest = json.loads((PACK / "manifest.json").read_text(encoding="utf-8"))
    model = OnnxModel(PACK / manifest["models"]["features"]["file"], "image", max_batch=16)
    cache = fh.FeatureCache(model, cache_dir)
    fh.HEAD_CACHE[:] = [cache_dir / "heads"]
    items = fh.add_pseudo_intraoral(fh.load_items(data))
    kind_set, rot_sets, _ = fh.radiograph_sets(items, cache)
    facing_set = fh.facing_samples(items, cache)
    polarity_set = fh.polarity_set(items, cache)
    records: list[tuple[int, list[str], np.ndarray]] = []
    fh.logo(kind_set, l2=L2, iterations=ITERATIONS, records=records)
    records = fh.four_looks(kind_set, records)
    with (data / "labels.csv").open(newline="", encoding="utf-8") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    groups = sorted({it.group for it in items if it.kind and not it.synthetic})
    spec_of = {h["name"]: h for h in manifest["heads"]}
    counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0]))
    images: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # kind -> [looks, to review]
    mistakes: list[str] = []
    unsure: list[str] = []  # right, below the threshold: what a person is asked
    wrong_unsure: list[str] = []  # wrong, below the threshold: a person corrects it
    x = kind_set.xa()
    with tempfile.TemporaryDirectory(prefix="orthovision-loso-") as tmp:
        for g in groups:
            train = [i for i in range(len(kind_set.y)) if kind_set.g[i] != g]
            head = fh.fit_cached(x[train], [kind_set.y[i] for i in train], l2=L2, iterations=ITERATIONS)
            others = [r for r in records if kind_set.g[r[0]] != g]
            calib = fh.fit_calibration(kind_set, items, others)
            heads: dict[str, tuple[LinearHead, dict[str, Any]]] = {"radiograph_kind": (head, calib)}
            if "radiograph_polarity" in spec_of:
                tr = [i for i in range(len(polarity_set.y)) if polarity_set.g[i] != g]
                px = polarity_set.xa()
                pol = fh.fit_cached(px[tr], [polarity_set.y[i] for i in tr], l2=L2, iterations=ITERATIONS)
                heads["radiograph_polarity"] = (pol, {})
            fams = {radiograph.KINDS[it.kind].orientation_family for it in items if it.group == g and it.kind}
            for fam in fams:
                s = rot_sets.get(fam or "")
                if s is None or not any(gg == g for gg in s.g):
                    continue
                tr = [i for i in range(len(s.y)) if s.g[i] != g]
                sx = s.xa()
                rot = fh.fit_cached(sx[tr], [s.y[i] for i in tr], l2=L2, iterations=ITERATIONS)
                heads[f"rotation_{fam}"] = (rot, {})
            if any(gg == g for gg in facing_set.g):
                tr = [i for i in range(len(facing_set.y)) if facing_set.g[i] != g]
                if len({facing_set.y[i] for i in tr}) == 2:
                    fx = facing_set.xa()
                    heads["ceph_facing"] = (
                        fh.fit_cached(fx[tr], [facing_set.y[i] for i in tr], l2=L2, iterations=ITERATIONS),
                        {},
                    )
            assert all(n in spec_of for n in heads)
            folder = Path(tmp) / g.replace("/", "_")
            pack = fold_pack(Path(tmp) / "pack", manifest, heads)
            looks: list[tuple[Path, str, dict[str, str], int]] = []
            (folder / "in").mkdir(parents=True)
            for it in items:
                if it.group != g or not it.kind or it.synthetic or "#" in it.path:
                    continue
                with Image.open(data / it.path) as im:
                    im.load()
                    for turn in fh.TURNS:
                        out = im.rotate(-turn, expand=True) if turn else im.copy()
                        if out.mode not in ("L", "RGB", "I;16", "I"):
                            out = out.convert("RGB")
                        if shift:
                            out = scanner_shift(out, shift)
                        p = folder / "in" / f"img{len(looks):04d}.png"
                        # The resolution the file states stays (the physical size cue reads it).
                        dpi = im.info.get("dpi")
                        if dpi and shift and shift.startswith("small"):  # the same film, fewer dots
                            dpi = tuple(float(d) * float(shift[len("small") :]) for d in dpi)
                        out.save(p, **({"dpi": dpi} if dpi else {}))
                        looks.append((p, it.kind, rows[it.path], turn))
            clf = load_pack(pack)
            labels = clf.classify_many([SourceImage(p, rel=p.name) for p, _, _, _ in looks])
            fact = (
                fact_of(row["modality"] for _, _, row, _ in looks) if radiographs == "source" else radiographs
            )
            if fact:
                labels = [apply_radiographs(lab, fact, "--radiographs") for lab in labels]
            for (_p, kind, row, turn), lab in zip(looks, labels, strict=True):
                images[kind][0] += 1
                images[kind][1] += bool(uncertain_tags(lab, DEFAULT_MIN_CONFIDENCE))
                truth = truth_of(row, kind)
                if row["upright"] == "yes":
                    truth["orientation"] = {str((360 - turn) % 360)}
                for tag in TAGS:
                    if tag not in truth:
                        continue
                    got = lab.get(tag)
                    value = got.value if got is not None else None
                    conf = got.confidence if got is not None else 0.0
                    ok = value in truth[tag]
                    sure = value is not None and conf >= DEFAULT_MIN_CONFIDENCE
                    c = counts[kind][tag]
                    c[0] += 1
                    c[1] += ok
                    c[2] += ok and sure
                    c[3] += sure and not ok
                    if sure and not ok:
                        mistakes.append(f"{row['path']} turned {turn}: {tag} {value} ({conf:.2f})")
                    elif ok and not sure:
                        unsure.append(f"{row['path']} turned {turn}: {tag} {value} ({conf:.2f})")
                    elif not ok:
                        wrong_unsure.append(f"{row['path']} turned {turn}: {tag} {value} ({conf:.2f})")
            print(f"{g}: {len(looks)} looks", file=sys.stderr, flush=True)
    report = {
        "method": "leave-one-source-out, end to end (classify on a pack fitted without the source)",
        "radiographs": radiographs or "none",
        "shift": shift or "none",
        "threshold": DEFAULT_MIN_CONFIDENCE,
        "kinds": {
            k: {
                "sources": len({it.group for it in items if it.kind == k and not it.synthetic}),
                "looks": images[k][0],
                "to_review": images[k][1],
                **{
                    t: dict(zip(("counted", "right", "right_sure", "wrong_sure"), v, strict=True))
                    for t, v in tags.items()
                },
            }
            for k, tags in sorted(counts.items())
        },
        "wrong_and_sure": mistakes,
        "right_not_sure": unsure,
        "wrong_not_sure": wrong_unsure,
    }
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        print_report(report)
    return 0


def print_report(report: dict[str, Any]) -> None:
    print(
        f"leave-one-source-out, end to end; sure = confidence >= {report['threshold']};"
        f" batch fact (--radiographs): {report['radiographs']}; scanner shift: {report['shift']}"
    )
    print(f"{'kind':13} {'src':>3} {'looks':>5} {'review':>6}  " + "  ".join(f"{t:>22}" for t in TAGS))
    print(" " * 33 + "  ".join(f"{'right sure/right wrong':>22}" for _ in TAGS))
    total = [0, 0]
    for k, r in report["kinds"].items():
        cells = []
        for t in TAGS:
            c = r.get(t)
            if not c:
                cells.append(f"{'-':>22}")
                continue
            total[0] += c["counted"]
            total[1] += c["wrong_sure"]
            cells.append(f"{c['right_sure']:>4}/{c['right']:<4} of {c['counted']:<4} {c['wrong_sure']:>4}")
        print(f"{k:13} {r['sources']:>3} {r['looks']:>5} {r['to_review']:>6}  " + "  ".join(cells))
    print(f"wrong and sure: {total[1]} of {total[0]} labels counted")
    for m in report["wrong_and_sure"]:
        print("  wrong and sure:", m)
