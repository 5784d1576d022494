"""Sending into a PACS: instances/s into a real Orthanc, against DCMTK `storescu` (C-STORE) and
`curl` posting the same files one by one (STOW-RS), same files, same Orthanc, same run.

    python bench/bench_send.py                      # 400 instances, 3 repeats
    python bench/bench_send.py --files 1000 --repeat 5 --update-docs

The instances are the converter's output for tests/corpus.py inputs (a quarter each JPEG, PNG,
8-bit TIFF and 16-bit TIFF; JPEG Baseline and Explicit VR Little Endian), converted once into
bench/_out_send/out. One Orthanc (Debian package, DICOMweb plugin) is started on loopback with a
temporary configuration (tests/orthanc.py); before each timed run its instances are deleted and
our ledger is removed, so every run sends everything and reads every header. Wall clock of the
whole command (interpreter start-up included), median of --repeat; after each run the bench
checks that Orthanc holds exactly the N instances.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "tests"))

from corpus import LABEL_ARGS, make_corpus  # noqa: E402
from orthanc import Orthanc  # noqa: E402

WORK = BENCH / "_out_send"
DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench-send:begin -->", "<!-- bench-send:end -->"
BOUNDARY = "orthovision-bench-boundary"
# DCMTK's, not the pynetdicom app of the same name that a venv may put first on PATH.
STORESCU = "/usr/bin/storescu"


@dataclass
class Row:
    name: str
    protocol: str
    command: str
    times: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)


def orthovision() -> str:
    exe = shutil.which("orthovision")
    return exe or f"{sys.executable} -m orthovision_cli"


def prepare(files: int, side: int) -> tuple[Path, list[Path]]:
    corpus = BENCH / "_corpus" / f"send-{files}-{side}"
    out = WORK / f"out-{files}-{side}"
    if not corpus.exists():
        make_corpus(corpus, files, side, clutter=False)
    if not out.exists():
        cmd = [*shlex.split(orthovision()), "convert", str(corpus), "-o", str(out), *LABEL_ARGS, "--quiet"]
        subprocess.run(cmd, check=True)
    dcm = sorted(out.rglob("*.dcm"))
    assert len(dcm) == files, f"{len(dcm)} instances converted, {files} expected"
    return out, dcm


def bodies(dcm: list[Path]) -> Path:
    """One multipart/related STOW-RS body per file, for curl (built before timing)."""
    folder = WORK / f"stow-bodies-{len(dcm)}"
    if folder.exists() and len(list(folder.iterdir())) == len(dcm):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, p in enumerate(dcm):
        head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        (folder / f"{i:06d}.mime").write_bytes(head + p.read_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode())
    return folder


def reset(o: Orthanc, out: Path) -> None:
    for pid in httpx.get(f"{o.url}/patients", timeout=60).json():
        httpx.delete(f"{o.url}/patients/{pid}", timeout=300).raise_for_status()
    for name in ("send.sqlite", "send.sqlite-wal", "send.sqlite-shm"):
        (out / ".orthovision" / name).unlink(missing_ok=True)
    subprocess.run(["sync"], check=True)


def timed(row: Row, o: Orthanc, out: Path, n: int) -> None:
    reset(o, out)
    t = time.perf_counter()
    proc = subprocess.run(row.command, shell=True, capture_output=True, text=True)
    row.times.append(time.perf_counter() - t)
    held = len(httpx.get(f"{o.url}/instances", timeout=60).json())
    if proc.returncode != 0 or held != n:
        raise SystemExit(
            f"{row.name}: exit {proc.returncode}, Orthanc holds {held}/{n}\n{proc.stderr[-2000:]}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=400)
    ap.add_argument("--side", type=int, default=640)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    for tool in (STORESCU, "curl", "Orthanc"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install dcmtk curl orthanc orthanc-dicomweb)")
    out, dcm = prepare(args.files, args.side)
    mb = sum(p.stat().st_size for p in dcm) / 1e6
    stow_bodies = bodies(dcm)
    folder = WORK / f"orthanc-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    o = Orthanc(folder, extra={"DicomThreadsCount": 4, "HttpThreadsCount": 8}).start()
    try:
        ov = orthovision()
        port = o.dicom_port
        url = o.dicomweb
        rows = [
            Row(
                "DCMTK `storescu` (peer)",
                "C-STORE",
                f"{STORESCU} -aec ORTHANC -xy -nh +sd +r +sp '*.dcm' 127.0.0.1 {port} {out}",
            ),
            Row(
                "orthovision send `--associations 1`",
                "C-STORE",
                f"{ov} send {out} --to dicom://ORTHANC@127.0.0.1:{port} --associations 1 -q",
            ),
            Row(
                "orthovision send (default: 4 associations)",
                "C-STORE",
                f"{ov} send {out} --to dicom://ORTHANC@127.0.0.1:{port} -q",
            ),
            Row(
                "`curl`, one POST per file (peer)",
                "STOW-RS",
                f"for f in {stow_bodies}/*.mime; do curl -sf -o /dev/null -X POST -H "
                f"'Content-Type: multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}' "
                f"-H 'Accept: application/dicom+json' --data-binary @$f {url}/studies || exit 1; done",
            ),
            Row(
                "orthovision send `--batch 20 --associations 1`",
                "STOW-RS",
                f"{ov} send {out} --to {url} --batch 20 --associations 1 -q",
            ),
            Row(
                "orthovision send `--batch 20` (default: 4 requests)",
                "STOW-RS",
                f"{ov} send {out} --to {url} --batch 20 -q",
            ),
        ]
        for _ in range(args.repeat):
            for row in rows:  # interleaved: drifting machine load hits every row alike
                timed(row, o, out, len(dcm))
                print(f"{row.name}: {row.times[-1]:.2f} s", file=sys.stderr)
    finally:
        o.stop()
        shutil.rmtree(folder, ignore_errors=True)
    report = render(rows, len(dcm), mb, args)
    print(report)
    if args.update_docs:
        text = DOCS.read_text()
        if BEGIN in text:
            head, rest = text.split(BEGIN, 1)
            text = head + BEGIN + "\n" + report + "\n" + END + rest.split(END, 1)[1]
        else:
            text += f"\n{BEGIN}\n{report}\n{END}\n"
        DOCS.write_text(text)


def render(rows: list[Row], n: int, mb: float, args: argparse.Namespace) -> str:
    peers = {"C-STORE": rows[0].seconds, "STOW-RS": rows[3].seconds}
    lines = [
        f"{n} instances ({mb:.0f} MB; JPEG Baseline and Explicit VR Little Endian, {args.side} px wide) into "
        f"Orthanc {orthanc_version()} on 127.0.0.1, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.machine()}, Python {platform.python_version()}; wall clock with start-up, median of "
        f"{args.repeat}, Orthanc emptied before each run.",
        "",
        "| protocol | sender | seconds | instances/s | vs peer |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.protocol} | {r.name} | {r.seconds:.2f} | {n / r.seconds:.0f} | "
            f"{peers[r.protocol] / r.seconds:.2f}x |"
        )
    lines += [
        "",
        f"Commands (`python bench/bench_send.py --files {n} --side {args.side} --repeat {args.repeat}`; "
        "ports are chosen per run):",
        "",
        "```sh",
    ]
    lines += [r.command.replace(str(ROOT) + "/", "") for r in rows]
    lines.append("```")
    return "\n".join(lines)


def orthanc_version() -> str:
    try:
        proc = subprocess.run(["Orthanc", "--version"], capture_output=True, text=True, timeout=30)
        return proc.stdout.split()[1]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "?"


if __name__ == "__main__":
    main()
