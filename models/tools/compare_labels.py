# SPDX-License-Identifier: Apache-2.0
"""Equality harness for speed work on the local classifier: dump every label, then compare.

    python models/tools/compare_labels.py dump before.json [--data ../shared/data] [--camera DIR]
    python models/tools/compare_labels.py compare before.json after.json

`dump` classifies, with the default pack and one ONNX thread, every image under `--data` (the
open photographs, radiographs, film scans and drawings; labels.csv lists them) as stored and
turned 90, 180 and 270 degrees (lossless PNG copies under the same relative names, so the name
hints are the same), plus the 24 MP camera JPEGs of `--camera` if given. Each image goes through
`classify` (alone) and the same set through `classify_many` in batches of `--batch`, so batched
and single runs are both checked. It writes every label (value, confidence, source, codes,
detail) and the review outcome at the default threshold (the tags `labels.policy` holds back).

`compare` exits 1 when any label value, source or review outcome differs, or a confidence or a
numeric detail differs by more than `--tol` (default 1e-3); it prints every difference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("ORTHOVISION_THREADS", "1")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from orthovision_cli.defaults import DEFAULT_MIN_CONFIDENCE  # noqa: E402
from orthovision_cli.inputs.source import SourceImage  # noqa: E402
from orthovision_cli.labels.local import load_pack  # noqa: E402
from orthovision_cli.labels.model import TAGS, Labels  # noqa: E402
from orthovision_cli.labels.policy import uncertain_tags  # noqa: E402

SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".jp2"}
TURNS = (0, 90, 180, 270)
CLOCKWISE = {
    90: Image.Transpose.ROTATE_270,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_90,
}


def _record(labels: Labels) -> dict[str, Any]:
    return {"labels": labels.as_dict(), "review": uncertain_tags(labels, DEFAULT_MIN_CONFIDENCE)}


def _review(labels: dict[str, Any]) -> list[str]:
    """The policy's outcome (`labels.policy.uncertain_tags`) from a dumped record, so that dumps
    made by other versions of the tool compare on the same rule."""
    return [
        tag
        for tag in TAGS
        if (lab := labels.get(tag))
        and lab["value"] not in (None, "")
        and lab["confidence"] < DEFAULT_MIN_CONFIDENCE
    ]


def _normalised(dump: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, runs in dump.items():
        out[key] = {
            run: ({"labels": r["labels"], "review": _review(r["labels"])} if "labels" in r else r)
            for run, r in runs.items()
        }
    return out


def _turned_copies(data: Path, files: list[Path], turn: int, tmp: Path) -> list[tuple[str, Path]]:
    out = []
    for f in files:
        rel = f.relative_to(data)
        dst = tmp / str(turn) / rel.with_suffix(".png")
        dst.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(f) as opened:
            opened.load()
            # Deep greyscale stays deep; everything else as RGB (PNG stores either losslessly).
            im = opened if opened.mode in ("I;16", "I", "L") else opened.convert("RGB")
            im.transpose(CLOCKWISE[turn]).save(dst)
        out.append((f"{rel}@{turn}", dst))
    return out


def dump(args: argparse.Namespace) -> int:
    clf = load_pack()
    data = Path(args.data).resolve()
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    items: list[tuple[str, Path, str]] = [
        (f"{f.relative_to(data)}@0", f, str(f.relative_to(data))) for f in files
    ]
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_turns:
            for turn in TURNS[1:]:
                for key, p in _turned_copies(data, files, turn, Path(tmp)):
                    items.append((key, p, key.rsplit("@", 1)[0]))
        if args.camera:
            cam = sorted(Path(args.camera).rglob("*.JPG"))[: args.camera_count]
            items += [(f"camera/{p.name}", p, p.name) for p in cam]
        out: dict[str, Any] = {}
        for key, path, rel in items:
            try:
                lab = clf.classify(SourceImage(path, rel=rel))
                out[key] = {"single": _record(lab)}
            except Exception as exc:  # recorded and compared like a label
                out[key] = {"single": {"error": f"{type(exc).__name__}: {exc}"}}
        for i in range(0, len(items), args.batch):
            chunk = items[i : i + args.batch]
            for (key, _p, _r), lab in zip(
                chunk, clf.classify_many([SourceImage(p, rel=r) for _k, p, r in chunk]), strict=True
            ):
                out[key]["many"] = _record(lab)
    Path(args.out).write_text(json.dumps(out, indent=1, sort_keys=True, default=str))
    print(f"{len(out)} images classified -> {args.out}")
    return 0


def _diff(a: Any, b: Any, where: str, tol: float, out: list[str], numeric: list[float]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{where}.{k}: only in {'before' if k in a else 'after'}")
            else:
                _diff(a[k], b[k], f"{where}.{k}", tol, out, numeric)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _diff(x, y, f"{where}[{i}]", tol, out, numeric)
    elif isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        d = abs(float(a) - float(b))
        numeric.append(d)
        if d > tol:
            out.append(f"{where}: {a} -> {b}")
    elif a != b:
        out.append(f"{where}: {a!r} -> {b!r}")


def compare(args: argparse.Namespace) -> int:
    before = _normalised(json.loads(Path(args.before).read_text()))
    after = _normalised(json.loads(Path(args.after).read_text()))
    problems: list[str] = []
    numeric: list[float] = []
    _diff(before, after, "", args.tol, problems, numeric)
    for p in problems:
        print(p)
    changed = sum(1 for d in numeric if d > 0)
    print(
        f"{len(before)} images x (single, many): {len(problems)} differences beyond {args.tol}; "
        f"{changed} of {len(numeric)} numbers not bit-equal, largest {max(numeric, default=0.0):.2g}"
    )
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out")
    d.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    d.add_argument("--camera", default=None, help="folder of camera JPEGs (bench/_corpus/camera-120)")
    d.add_argument("--camera-count", type=int, default=20)
    d.add_argument("--batch", type=int, default=8)
    d.add_argument("--no-turns", action="store_true")
    c = sub.add_parser("compare")
    c.add_argument("before")
    c.add_argument("after")
    c.add_argument("--tol", type=float, default=1e-3)
    args = ap.parse_args(argv)
    return dump(args) if args.cmd == "dump" else compare(args)


if __name__ == "__main__":
    raise SystemExit(main())
