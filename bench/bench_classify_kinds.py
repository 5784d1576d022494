"""CPU cost of classification per image: radiographs and 24 MP photographs, with the radiograph
kind, rotation and view heads against the same pack without them (the peer), in the same run.

    python bench/bench_classify_kinds.py [--repeat 3]

Builds a small corpus under bench/_corpus_kinds/ from the open images of ../shared/data (or the
test images in tests/data/classify when the shared data is absent): a panoramic scaled to
2900x1400 JPEG, a lateral cephalogram 2000x2500 JPEG, a chest radiograph 2500x3000 PNG, a 24 MP
(6000x4000) camera JPEG of a face and one of an intraoral view. Both packs run in this process,
one ONNX thread (`ORTHOVISION_THREADS=1`), each image classified alone (`classify`, no batching),
after one warm-up pass; the figure is CPU time (process_time) per image, median of --repeat runs.
`preview ms` is the decoding of the 384 px preview alone; `beyond preview` what classification
costs on top of it (rules, detectors, feature runs, heads).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

os.environ.setdefault("ORTHOVISION_THREADS", "1")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared" / "data"
TESTS = REPO / "tests" / "data" / "classify"
CORPUS = HERE / "_corpus_kinds"
NEW_HEADS = ("radiograph_kind", "grey_photo", "intraoral_view", "rotation_")


def source(shared: str, test: str) -> Path:
    p = SHARED / shared
    return p if p.is_file() else TESTS / test


def make_corpus() -> list[Path]:
    CORPUS.mkdir(exist_ok=True)
    spec = [
        ("radiographs/panoramic/basic_panoramic_radiograph.jpg", "panoramic.jpg", (2900, 1400), "pano.jpg"),
        ("radiographs/ceph/fernroentgenseitenbild.jpg", "ceph_lateral.jpg", (2000, 2500), "ceph.jpg"),
        ("radiographs/chest/1ae7877e.png", "chest_1.png", (2500, 3000), "chest.png"),
        ("photos/faces_london/rest/005_03.jpg", "face_rest.jpg", (6000, 4000), "face24mp.jpg"),
        ("photos/intraoral/sjtu_p0_frontal.png", "io_frontal.jpg", (6000, 4000), "io24mp.jpg"),
    ]
    out = []
    rng = np.random.default_rng(0)
    for shared, test, size, name in spec:
        dest = CORPUS / name
        out.append(dest)
        if dest.is_file():
            continue
        im = Image.open(source(shared, test)).convert("RGB")
        if name.startswith("face"):
            # A portrait on a 3:2 frame, as a camera takes it.
            canvas = Image.new("RGB", size, (128, 128, 128))
            face = im.resize((size[1], size[1]), Image.Resampling.BILINEAR)
            canvas.paste(face, ((size[0] - size[1]) // 2, 0))
            im = canvas
        else:
            im = im.resize(size, Image.Resampling.BILINEAR)
        a = np.asarray(im, np.int16) + rng.integers(-3, 4, (size[1], size[0], 1), dtype=np.int16)
        img = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
        if name.endswith(".png"):
            img.convert("L").save(dest)
        else:
            img.save(dest, quality=92)
    return out


def peer_pack(tmp: Path) -> Path:
    """The default pack without the heads this change added (colour rule, faces, intraoral and
    smile heads only)."""
    src = REPO / "models"
    dst = tmp / "peer"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("tools"))
    mf = json.loads((dst / "manifest.json").read_text())
    mf["heads"] = [h for h in mf["heads"] if not h["name"].startswith(NEW_HEADS)]
    mf["name"] = "peer"
    (dst / "manifest.json").write_text(json.dumps(mf))
    return dst


def measure(pack: Path, paths: list[Path], repeat: int) -> dict[str, float]:
    from orthovision_cli.inputs.source import SourceImage
    from orthovision_cli.labels.local import load_pack

    clf = load_pack(pack)
    for p in paths:  # warm-up: sessions made, first-run allocations done
        clf.classify(SourceImage(p, rel=p.name))
    out: dict[str, float] = {}
    for p in paths:
        runs = []
        for _ in range(repeat):
            img = SourceImage(p, rel=p.name)  # fresh: no cached preview
            t = time.process_time()
            clf.classify(img)
            runs.append((time.process_time() - t) * 1000)
        out[p.name] = statistics.median(runs)
    return out


def preview_only(paths: list[Path], repeat: int) -> dict[str, float]:
    """CPU time of decoding the 384 px preview alone (what every classifier needs first)."""
    from orthovision_cli.inputs.source import SourceImage

    out: dict[str, float] = {}
    for p in paths:
        runs = []
        for _ in range(repeat):
            t = time.process_time()
            SourceImage(p, rel=p.name).preview(384)
            runs.append((time.process_time() - t) * 1000)
        out[p.name] = statistics.median(runs)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    paths = make_corpus()
    with tempfile.TemporaryDirectory() as tmp:
        peer = measure(peer_pack(Path(tmp)), paths, args.repeat)
        new = measure(REPO / "models", paths, args.repeat)
    decode = preview_only(paths, args.repeat)
    print(
        f"{'image':16s} {'preview ms':>10s} {'peer ms':>8s} {'default ms':>11s} {'added ms':>9s} {'beyond preview':>15s}"
    )
    for name in new:
        print(
            f"{name:16s} {decode[name]:10.1f} {peer[name]:8.1f} {new[name]:11.1f} "
            f"{new[name] - peer[name]:9.1f} {new[name] - decode[name]:15.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
