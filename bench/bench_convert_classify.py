"""`orthovision convert` WITH classification on 24-megapixel camera JPEGs, end to end, against
the same conversion without classification (`--no-models`), in the same run.

    python bench/bench_convert_classify.py [--count 60] [--repeat 3]

Two corpora from bench/_corpus/jpeg24mp (made by bench/corpus.py, 6000x4000, camera-like noise
and EXIF with a 160x120 thumbnail):
- `plain`: the files as they are: the classifiers must decode each picture (DCT-scaled);
- `mpf`: the same pictures re-saved as cameras write them, with a 1620x1080 preview appended
  through MPF (Pillow's MPO writer), which the classifiers use instead.
Target (issue 4): convert with classification at 20 photographs/s or more on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "_corpus" / "jpeg24mp"
OUT = HERE / "_out_convert_classify"
EXE = Path(sys.executable).with_name("orthovision")


def corpus(kind: str, count: int) -> Path:
    files = sorted(SOURCE.rglob("*.JPG"))[:count]
    if len(files) < count:
        sys.exit(f"need {count} JPEGs in {SOURCE}: run python bench/corpus.py first")
    folder = HERE / "_corpus" / f"classify-{kind}-{count}"
    done = folder.with_suffix(".complete")
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for f in files:
        if kind == "plain":
            shutil.copy(f, folder / f.name)
        else:
            with Image.open(f) as im:
                im.load()
                exif = im.info.get("exif", b"")
                preview = im.resize((1620, 1080), Image.Resampling.BILINEAR)
                im.save(
                    folder / f.name,
                    format="MPO",
                    save_all=True,
                    append_images=[preview],
                    quality=92,
                    exif=exif,
                )
    done.touch()
    return folder


def timed(args: list[str], out: Path) -> tuple[float, float]:
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(["sync"], check=True)
    start = time.perf_counter()
    proc = subprocess.run([str(EXE), *args, "-o", str(out)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"orthovision failed ({proc.returncode}): {proc.stderr[-2000:]}")
    own = json.loads((out / "orthovision-report.json").read_text())["seconds"]
    return seconds, float(own)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    rows = []
    for kind in ("plain", "mpf"):
        folder = corpus(kind, a.count)
        for label, extra in (
            ("with classification", ["--on-uncertain", "convert"]),
            ("--no-models", ["--no-models", "--modality", "XC", "--body-part", "HEAD"]),
        ):
            args = ["convert", str(folder), "--jobs", "2", "--quiet", *extra]
            for f in folder.iterdir():  # warm the page cache
                f.read_bytes()
            runs = [timed(args, OUT / f"{kind}-{label[:4]}") for _ in range(a.repeat)]
            secs = statistics.median(r[0] for r in runs)
            own = statistics.median(r[1] for r in runs)
            rows.append((kind, label, secs, a.count / secs, own, "orthovision " + " ".join(args)))
    print(
        f"{a.count} 24 MP JPEGs, --jobs 2, median of {a.repeat}, wall clock with start-up; "
        f"load average before: {os.getloadavg()[0]:.1f}\n"
    )
    print("| corpus | run | seconds | photos/s | without start-up |\n| --- | --- | ---: | ---: | ---: |")
    for kind, label, secs, rate, own, _ in rows:
        print(f"| {kind} | {label} | {secs:.2f} | {rate:.1f} | {own:.2f} s ({a.count / own:.1f} photos/s) |")
    print("\nCommands:\n```sh")
    for *_, cmd in rows:
        print(cmd + " -o OUT")
    print("```")


if __name__ == "__main__":
    main()
