"""Peak memory of `orthovision convert --jobs 2` on very large images, with and without a
`--max-memory` budget (issue 12).

    python bench/bench_memory.py [--tiffs 3] [--jpegs 4] [--update-docs]

Corpus (`bench/_corpus/memory/`, generated): 16-bit greyscale 100-megapixel TIFFs
(10000x10000, uncompressed, 200 MB each, the film scan upscaled with noise) and 50-megapixel
camera JPEGs, in turn upright (8640x5760, passed through), with EXIF Orientation 6 (a lossless
DCT-domain turn) and 8650x5770 with Orientation 6 (the turn is not exact: decoded).

Memory: the proportional set size (PSS: shared pages split among the processes sharing them)
of the main process and its workers, summed, sampled every 20 ms; the peaks of anonymous memory
(the images in flight) and of all memory (also the mapped input files) are reported.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = corpus.CORPUS / "memory"
OUT = HERE / "_out_memory"
EXE = Path(sys.executable).with_name("orthovision")
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench-memory:begin -->", "<!-- bench-memory:end -->"


def make(n_tiff: int, n_jpeg: int) -> tuple[Path, Path]:
    import tifffile
    from PIL import Image

    tiffs, jpegs = SRC / "tiff100mp", SRC / "jpeg50mp"
    tiffs.mkdir(parents=True, exist_ok=True)
    jpegs.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    film = None
    for i in range(n_tiff):
        p = tiffs / f"scan{i + 1}.tif"
        if p.exists():
            continue
        if film is None:
            im = Image.open(corpus.SAMPLE / "film_scans" / "starshot.tif").convert("L")
            film = np.asarray(im.resize((10000, 10000), Image.BILINEAR), dtype=np.uint16) * 240
        arr = film + rng.integers(0, 400, film.shape, dtype=np.uint16) + np.uint16(300 * i)
        tifffile.imwrite(
            p.with_suffix(".part"),
            arr,
            photometric="minisblack",
            rowsperstrip=64,
            resolution=(300, 300),
            resolutionunit="INCH",
        )
        os.replace(p.with_suffix(".part"), p)
    base = None
    # In turn: upright (pass-through), turned in the DCT domain, turned by decoding (not exact).
    kinds = [(8640, 5760, 1), (8640, 5760, 6), (8650, 5770, 6)]
    sizes = [kinds[i % 3] for i in range(n_jpeg)]
    for i, (w, h, orientation) in enumerate(sizes):
        p = jpegs / f"IMG_{i + 1:04d}.JPG"
        if p.exists():
            continue
        if base is None:
            im = Image.open(corpus.SAMPLE / "photos" / corpus.PHOTOS[0]).convert("RGB")
            base = np.asarray(im.resize((8650, 5770), Image.BICUBIC))
        px = base[:h, :w].astype(np.int16) + rng.integers(-6, 7, (h, w, 3), dtype=np.int16)
        exif = Image.Exif()
        exif[0x0112] = orientation
        exif[0x010F] = "Canon"
        buf = io.BytesIO()
        Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)).save(
            buf, "JPEG", quality=92, exif=exif.tobytes()
        )
        p.write_bytes(buf.getvalue())
    return tiffs, jpegs


def _tree(pid: int) -> list[int]:
    out = [pid]
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for k in kids:
        out += _tree(int(k))
    return out


def _pss(pid: int) -> tuple[int, int]:
    """(PSS of anonymous memory, PSS of everything) in bytes. Anonymous memory is what the
    images in flight take; the rest is mostly mapped input files (page cache, reclaimable)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    anon = re.search(r"^Pss_Anon:\s+(\d+) kB", text, re.M)
    total = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return (int(anon.group(1)) * 1024 if anon else 0, int(total.group(1)) * 1024 if total else 0)


def run(args: list[str]) -> tuple[float, tuple[int, int], int]:
    """Seconds, peak summed (anonymous PSS, PSS), exit code."""
    out = Path(args[args.index("-o") + 1])
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_anon = peak_all = 0
    while proc.poll() is None:
        sizes = [_pss(p) for p in _tree(proc.pid)]
        peak_anon = max(peak_anon, sum(a for a, _ in sizes))
        peak_all = max(peak_all, sum(t for _, t in sizes))
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    return seconds, (peak_anon, peak_all), proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiffs", type=int, default=3)
    ap.add_argument("--jpegs", type=int, default=6)
    ap.add_argument("--update-docs", action="store_true")
    a = ap.parse_args()
    tiffs, jpegs = make(a.tiffs, a.jpegs)
    load = os.getloadavg()
    rows = []
    for name, folder, labels in (
        ("16-bit 100 MP TIFF", tiffs, ["--modality", "DX"]),
        ("50 MP JPEG", jpegs, ["--modality", "XC"]),
    ):
        n = len(list(folder.iterdir()))
        mb = sum(f.stat().st_size for f in folder.iterdir()) / 1e6
        for budget in ("default", "64G", "600M"):
            args = [
                str(EXE),
                "convert",
                str(folder),
                "-o",
                str(OUT / f"{folder.name}-{budget}"),
                "--no-models",
                *labels,
                "--body-part",
                "HEAD",
                "--jobs",
                "2",
                "--quiet",
            ]
            if budget != "default":
                args += ["--max-memory", budget]
            seconds, peak, rc = run(args)
            if rc != 0:
                print(f"exit {rc}: {' '.join(args)}", file=sys.stderr)
            rows.append((name, n, mb, budget, seconds, peak, rc, " ".join(args)))
            print(rows[-1][:7], file=sys.stderr)
    from orthovision_cli.memory import default_budget

    lines = [
        f"Command: `python bench/bench_memory.py --tiffs {a.tiffs} --jpegs {a.jpegs}`; "
        f"{time.strftime('%Y-%m-%d')}; load average before {load[0]:.2f} {load[1]:.2f} "
        f"{load[2]:.2f}; default budget here: {default_budget() / 2**30:.1f} GiB (half of "
        "MemAvailable). Peak = the largest sum over the main process and its workers of the "
        "proportional set size of anonymous memory (what the images take), and of all memory "
        "(including mapped input files: page cache, reclaimable).",
        "",
        "| inputs | files | MB | `--max-memory` | seconds | peak anonymous (MiB) | peak all (MiB) | exit |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, n, mb, budget, seconds, (anon, allmem), rc, _ in rows:
        lines.append(
            f"| {name} | {n} | {mb:,.0f} | {budget} | {seconds:.1f} | {anon / 2**20:,.0f} | "
            f"{allmem / 2**20:,.0f} | {rc} |"
        )
    lines += ["", "```sh"] + [r[7] for r in rows] + ["```"]
    text = "\n".join(lines)
    print(text)
    if a.update_docs:
        doc = DOCS.read_text()
        block = f"{BEGIN}\n{text}\n{END}"
        if BEGIN in doc:
            doc = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, doc, flags=re.S)
        else:
            doc = doc.rstrip() + "\n\n### Memory (`--max-memory`)\n\n" + block + "\n"
        DOCS.write_text(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
