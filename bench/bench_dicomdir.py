"""A File-set for media (issue 25): `orthovision dicomdir` of N instances, against DCMTK `dcmmkdir`
on the same instances, same run.

    python bench/bench_dicomdir.py                          # N = 1,000 and 10,000, 3 repeats
    python bench/bench_dicomdir.py --sizes 1000 --repeat 1
    python bench/bench_dicomdir.py --update-docs

The instances: one small JPEG (sample_data's first photograph, downscaled to 64x48) converted once
by `orthovision convert --no-models`, then copied N times with new SOP Instance UIDs (pydicom), 10
instances a series, 5 series a study, one study a patient (so 10,000 instances are 200 patients,
200 studies, 1,000 series). Generated once under bench/_out_dicomdir/in-N (kept between runs).

Timed (wall clock of the whole command, interpreter start-up included, median of --repeat,
after `sync`, a fresh target each run, the ledger's header cache removed so every header is read):

* `orthovision dicomdir IN --to MEDIA`: reads each header, copies each instance to its IDs-only
  name, writes the DICOMDIR, syncs it to disk, renames it into place;
* `dcmmkdir -q +r +I -Pfl` in a copy of our IDs-only tree (it names nothing and copies nothing:
  its input must already have PS3.10 file names), the DICOMDIR only, no sync;
* `cp -r IN COPY && sync`: the floor for copying the instances durably.

Every run is checked: exit status 0, N IMAGE records in the DICOMDIR.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / "_out_dicomdir"
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench-dicomdir:begin -->", "<!-- bench-dicomdir:end -->"
PER_SERIES, SERIES_PER_STUDY = 10, 5


def orthovision() -> str:
    return shutil.which("orthovision") or str(Path(sys.executable).with_name("orthovision"))


def seed_instance() -> Path:
    """One instance converted by orthovision from a 64x48 JPEG."""
    from PIL import Image

    seed = WORK / "seed"
    done = list((seed / "out").rglob("*.dcm")) if seed.exists() else []
    if done:
        return done[0]
    shutil.rmtree(seed, ignore_errors=True)
    (seed / "in").mkdir(parents=True)
    photo = sorted((ROOT / "sample_data" / "photos").glob("*.jpg"))[0]
    with Image.open(photo) as im:
        im.convert("RGB").resize((64, 48)).save(seed / "in" / "small.jpg", quality=90)
    cmd = [orthovision(), "convert", str(seed / "in"), "-o", str(seed / "out"), "--no-models"]
    cmd += ["--modality", "XC", "--body-part", "HEAD", "--on-uncertain", "convert", "--quiet"]
    subprocess.run(cmd, check=True, timeout=300)
    return next((seed / "out").rglob("*.dcm"))


def corpus(n: int) -> Path:
    """N copies of the seed instance with their own UIDs, in patient/study/series folders."""
    import pydicom
    from pydicom.uid import generate_uid

    src = WORK / f"in-{n}"
    done = WORK / f"in-{n}.complete"
    if done.exists():
        return src
    shutil.rmtree(src, ignore_errors=True)
    print(f"generating {n} instances in {src} ...", file=sys.stderr)
    ds = pydicom.dcmread(seed_instance())
    per_study = PER_SERIES * SERIES_PER_STUDY
    for i in range(n):
        study, series = divmod(i, per_study)[0], i // PER_SERIES
        if i % per_study == 0:
            ds.PatientID = f"BENCH{study:06d}"
            ds.PatientName = f"Bench^Patient{study}"
            ds.StudyInstanceUID = generate_uid()
            ds.StudyID = str(study)
        if i % PER_SERIES == 0:
            ds.SeriesInstanceUID = generate_uid()
            ds.SeriesNumber = series % SERIES_PER_STUDY + 1
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i % PER_SERIES + 1
        folder = src / ds.PatientID / f"study{study}" / f"series{series}"
        folder.mkdir(parents=True, exist_ok=True)
        ds.save_as(folder / f"img{i:07d}.dcm", enforce_file_format=True)
    done.write_text("")
    return src


def image_records(dicomdir: Path) -> int:
    dump = subprocess.run(["dcmdump", "-q", str(dicomdir)], capture_output=True, text=True, timeout=600)
    return dump.stdout.count('"Directory Record" IMAGE')


CPU: dict[str, list[float]] = {}  # CPU seconds (user + sys, the process tree) per command


def timed(cmd: list[str], cwd: Path | None = None) -> float:
    subprocess.run(["sync"], check=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=3600)
    took = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    CPU.setdefault(" ".join(cmd), []).append(cpu)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return took


def bench(n: int, repeat: int, peer_repeat: int) -> dict[str, Any]:
    src = corpus(n)
    for p in src.rglob("*.dcm"):  # into the page cache, as after a conversion
        p.read_bytes()
    media, peer, copy = WORK / f"media-{n}", WORK / f"peer-{n}", WORK / f"copy-{n}"
    ours_cmd = [orthovision(), "dicomdir", str(src), "--to", str(media)]
    ours: list[float] = []
    for _ in range(repeat):
        shutil.rmtree(media, ignore_errors=True)
        (src / ".orthovision" / "send.sqlite").unlink(missing_ok=True)  # every header read
        ours.append(timed(ours_cmd))
        got = image_records(media / "DICOMDIR")
        if got != n:
            raise SystemExit(f"orthovision dicomdir: {got} IMAGE records, expected {n}")
    # The peer indexes a copy of our IDs-only tree (it does not copy or rename files).
    shutil.rmtree(peer, ignore_errors=True)
    shutil.copytree(media, peer)
    tops = sorted(p.name for p in peer.iterdir() if p.is_dir())
    peer_cmd = ["dcmmkdir", "-q", "+r", "+I", "-Pfl", "+F", "ORTHOVISION", *tops]
    theirs: list[float] = []
    for _ in range(peer_repeat):
        (peer / "DICOMDIR").unlink(missing_ok=True)
        theirs.append(timed(peer_cmd, cwd=peer))
        got = image_records(peer / "DICOMDIR")
        if got != n:
            raise SystemExit(f"dcmmkdir: {got} IMAGE records, expected {n}")
    floor: list[float] = []
    for _ in range(repeat):
        shutil.rmtree(copy, ignore_errors=True)
        floor.append(timed(["sh", "-c", f"cp -r '{src}' '{copy}' && sync"]))
    for p in (peer, copy):
        shutil.rmtree(p, ignore_errors=True)
    ours_s, theirs_s, floor_s = (statistics.median(x) for x in (ours, theirs, floor))
    return {
        "n": n,
        "ours_cpu": statistics.median(CPU[" ".join(ours_cmd)]),
        "peer_cpu": statistics.median(CPU[" ".join(peer_cmd)]),
        "load": os.getloadavg()[0],
        "ours": ours_s,
        "peer": theirs_s,
        "floor": floor_s,
        "ours_cmd": " ".join(ours_cmd).replace(str(ROOT) + "/", ""),
        "peer_cmd": f"(cd {peer.relative_to(ROOT)} && dcmmkdir -q +r +I -Pfl +F ORTHOVISION PT*)",
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| instances | orthovision dicomdir | CPU (user+sys) | CPU per instance "
        "| dcmmkdir -Pfl +I (DICOMDIR only) | its CPU | ours / dcmmkdir (wall) | cp -r && sync "
        "| load average |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        n, ours, peer, floor = int(r["n"]), float(r["ours"]), float(r["peer"]), float(r["floor"])
        cpu, peer_cpu, load = float(r["ours_cpu"]), float(r["peer_cpu"]), float(r["load"])
        lines.append(
            f"| {n:,} | {ours:.2f} s | {cpu:.2f} s | {cpu / n * 1000:.2f} ms | {peer:.2f} s "
            f"| {peer_cpu:.2f} s | {ours / peer:.2f}x | {floor:.2f} s | {load:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--peer-repeat", type=int, default=1, help="dcmmkdir runs (slow at 10,000)")
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    WORK.mkdir(exist_ok=True)
    rows = [bench(n, args.repeat, args.peer_repeat) for n in args.sizes]
    text = table(rows)
    print(text)
    for r in rows:
        print(f"  N={r['n']}: {r['ours_cmd']}\n           {r['peer_cmd']}")
    if args.update_docs:
        doc = DOCS.read_text()
        block = f"{BEGIN}\n{text}\n{END}"
        if BEGIN in doc and END in doc:
            doc = doc[: doc.index(BEGIN)] + block + doc[doc.index(END) + len(END) :]
        else:
            doc = doc.rstrip("\n") + "\n\n## DICOMDIR (File-set for media)\n\n" + block + "\n"
        DOCS.write_text(doc)


if __name__ == "__main__":
    main()
