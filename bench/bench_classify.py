"""Classification throughput on 24-megapixel JPEG photographs: draft decoding vs full decoding.

    python bench/bench_classify.py [--count 24] [--workers 2]

Generates 6000x4000 JPEGs (a real face photograph from ../shared/data scaled up with camera-like
noise, or a synthetic scene when the shared data is absent) into bench/_corpus/, then classifies
them with the default pack in `--workers` processes (one ONNX thread each):
- `draft`: the pipeline as shipped (JPEG DCT-scaled decode to about 750x500, then 384 px);
- `full-decode`: the baseline, every pixel decoded, then scaled to the same preview.
Figures go to stdout (photos/s and ms per photo).
"""

from __future__ import annotations

import argparse
import os
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "_corpus"
FACE = HERE.parent.parent / "shared" / "data" / "photos" / "faces_london" / "smile" / "062_08.jpg"
WIDTH, HEIGHT = 6000, 4000


def make_corpus(count: int) -> list[Path]:
    CORPUS.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    base: Image.Image | None = None
    if FACE.is_file():
        base = Image.open(FACE).convert("RGB").resize((HEIGHT, HEIGHT), Image.Resampling.BILINEAR)
    for i in range(count):
        p = CORPUS / f"photo_{i:03d}.jpg"
        paths.append(p)
        if p.is_file():
            continue
        canvas = np.full((HEIGHT, WIDTH, 3), 128 + i % 40, np.uint8)
        if base is not None:
            off = (WIDTH - HEIGHT) // 2 + int(rng.integers(-500, 500))
            canvas[:, off : off + HEIGHT] = np.asarray(base)
        else:
            canvas[...] = rng.integers(0, 255, (1, 1, 3), dtype=np.uint8)
        noise = rng.integers(-6, 7, (HEIGHT // 8, WIDTH // 8, 1), dtype=np.int16)
        canvas = np.clip(canvas + np.kron(noise, np.ones((8, 8, 1), np.int16)), 0, 255)
        Image.fromarray(canvas.astype(np.uint8)).save(p, quality=92)
    return paths


class FullDecodeImage:
    """A SourceImage stand-in whose preview decodes every pixel first (the baseline)."""

    def __init__(self, path: Path):
        self.path = path
        self.rel = path.name

    def preview(self, max_side: int = 256) -> np.ndarray:
        with Image.open(self.path) as im:
            im = im.convert("RGB")  # full decode, no draft
            im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
            return np.asarray(im)


def _work(args: tuple[str, list[str]]) -> tuple[int, float]:
    mode, paths = args
    from orthovision_cli.inputs.source import SourceImage
    from orthovision_cli.labels.local import load_pack

    clf = load_pack()
    images: list[Any] = [
        SourceImage(Path(p), rel=Path(p).name) if mode == "draft" else FullDecodeImage(Path(p)) for p in paths
    ]
    done = 0
    cpu0 = time.process_time()
    for i in range(0, len(images), 8):
        done += len(clf.classify_many(images[i : i + 8]))
    return done, time.process_time() - cpu0


def run(mode: str, paths: list[Path], workers: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds summed over the workers)."""
    os.environ["ORTHOVISION_THREADS"] = "1"
    chunks = [[str(p) for p in paths[i::workers]] for i in range(workers)]
    ctx = get_context("spawn")
    with ctx.Pool(workers) as pool:
        pool.map(_work, [(mode, [str(paths[0])])] * workers)  # warm: sessions, imports
        t0 = time.perf_counter()
        results = pool.map(_work, [(mode, c) for c in chunks])
        dt = time.perf_counter() - t0
    assert sum(n for n, _ in results) == len(paths)
    return dt, sum(c for _, c in results)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    paths = make_corpus(args.count)
    mp = WIDTH * HEIGHT / 1e6
    print(f"corpus: {len(paths)} JPEG photographs, {WIDTH}x{HEIGHT} ({mp:.0f} MP), q92")
    print(f"workers: {args.workers} processes x 1 ONNX thread; cores: {os.cpu_count()}")
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    # Wall-clock rate depends on what else runs; CPU time per photo does not: with the cores
    # free, `workers` processes reach workers / (CPU seconds per photo).
    for mode in ("draft", "full-decode"):
        dt, cpu = run(mode, paths, args.workers)
        per_photo = cpu / len(paths)
        print(
            f"{mode:12s} wall {len(paths) / dt:6.1f} photos/s | CPU {per_photo * 1000:6.1f} ms "
            f"per photo -> {args.workers / per_photo:6.1f} photos/s on {args.workers} free cores"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
