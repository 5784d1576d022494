"""CPU cost of the default local classification per 24 MP camera photograph, one process.

    python bench/bench_classify_cpu.py [--count 20] [--repeat 3]

Takes the first `--count` JPEGs of the camera corpus of bench/bench_camera.py (bench/_corpus/
camera-120/, made there; one in three carries an MPF preview, 30 % an EXIF turn) and measures,
with one ONNX thread (`ORTHOVISION_THREADS=1`, as batch workers run) after one warm-up pass:
- `preview`: decoding the 384 px preview alone (`SourceImage.preview`);
- `classify`: `LocalClassifier.classify` per image, preview included (what `convert` does);
- `classify_many`: the same images in one `classify_many` call (what `classify` does in a chunk).
Figures: CPU time (time.process_time) per photo in ms, median of `--repeat` runs; the peer of
`classify` is `preview`, run in the same process (what classification costs beyond decoding).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import fields
from pathlib import Path

os.environ.setdefault("ORTHOVISION_THREADS", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, os.environ.get("ORTHOVISION_SOURCE", str(HERE.parent)))

from orthovision_cli.inputs.source import SourceImage  # noqa: E402
from orthovision_cli.labels.local import load_pack  # noqa: E402
from orthovision_cli.labels.local.classifier import PREVIEW_SIDE  # noqa: E402

CORPUS = HERE / "_corpus" / "camera-120"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    args = ap.parse_args(argv)
    paths = sorted(args.corpus.rglob("*.JPG"))[: args.count]
    if not paths:
        print(f"no JPEGs under {args.corpus}: run bench/bench_camera.py once to make them")
        return 2
    clf = load_pack()

    def images() -> list[SourceImage]:
        # As `convert` and `classify` hand them over: probed already (batch.analyse); code
        # before that flag existed probed again in the preview.
        if "probed" in {f.name for f in fields(SourceImage)}:
            return [SourceImage(p, rel=p.name, probed=True) for p in paths]
        return [SourceImage(p, rel=p.name) for p in paths]

    def preview() -> None:
        for im in images():
            im.preview(PREVIEW_SIDE)

    def single() -> None:
        for im in images():
            clf.classify(im)

    def many() -> None:
        clf.classify_many(images())

    runs = {"preview": preview, "classify": single, "classify_many": many}
    single()  # warm-up: sessions, page cache
    ms: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeat):
        for name, fn in runs.items():
            t = time.process_time()
            fn()
            ms[name].append((time.process_time() - t) * 1000 / len(paths))
    print(f"{len(paths)} photos from {args.corpus}, ORTHOVISION_THREADS={os.environ['ORTHOVISION_THREADS']}")
    for name, values in ms.items():
        print(
            f"{name:>14}: {statistics.median(values):6.1f} ms CPU/photo  (runs: {', '.join(f'{v:.1f}' for v in values)})"
        )
    extra = statistics.median(ms["classify"]) - statistics.median(ms["preview"])
    print(f"{'beyond preview':>14}: {extra:6.1f} ms CPU/photo")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
