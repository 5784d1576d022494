"""Run `orthovision convert` and `classify` over a fuzzed corpus and list every robustness
problem: a hang (past the timeout), a batch crash (an exit code that is not ours), a traceback,
a reason code that docs/exit-codes.md does not document, an internal error, a multi-line
message, a temporary file left, a failed input with outputs, an output pydicom cannot read.
Peak memory is the largest sum of RSS over the process tree (main process and workers),
sampled every 50 ms. Used by tests/fuzz/test_fuzz.py (CI) and bench/fuzz.py (the long run).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
OUR_EXIT_CODES = {0, 3, 4, 5}


def documented_reasons() -> set[str]:
    """The reason codes of docs/exit-codes.md's reason table."""
    text = (REPO / "docs" / "exit-codes.md").read_text()
    table = text[text.index("## Reason codes") :]
    reasons: set[str] = set()
    for line in table.splitlines():
        cells = line.split("|")
        if len(cells) > 3 and cells[1].strip().startswith("`"):
            reasons.update(re.findall(r"`([a-z-]+)`", cells[2]))
    return reasons


@dataclass
class Run:
    command: str
    files: int
    seconds: float = 0.0
    exit_code: int | None = None
    peak_rss: int = 0  # bytes, the process tree together
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)


class _Sampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stop.is_set():
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.Error):  # a worker that just ended
                        total += p.memory_info().rss
            except psutil.Error:
                break
            self.peak = max(self.peak, total)
            time.sleep(0.05)


def _run(args: list[str], timeout: float) -> tuple[subprocess.CompletedProcess[str] | None, float, int]:
    env = {**os.environ, "CI": ""}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orthovision_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    sampler = _Sampler(proc.pid)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.communicate()
        sampler.stop.set()
        return None, time.perf_counter() - start, sampler.peak
    sampler.stop.set()
    sampler.join()
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done, time.perf_counter() - start, sampler.peak


def _common(run: Run, proc: subprocess.CompletedProcess[str] | None, timeout: float) -> bool:
    if proc is None:
        run.problems.append(f"hang: {run.command} still running after {timeout:.0f} s")
        return False
    run.exit_code = proc.returncode
    if proc.returncode not in OUR_EXIT_CODES:
        run.problems.append(f"crash: {run.command} exit code {proc.returncode}")
    for stream in (proc.stdout, proc.stderr):
        if "Traceback" in stream:
            at = stream.index("Traceback")
            run.problems.append(f"traceback from {run.command}: {stream[at : at + 300]!r}")
    return True


def convert(
    inputs: Path, out: Path, *, jobs: int = 2, timeout: float = 600.0, extra: tuple[str, ...] = ()
) -> Run:
    files = sum(1 for p in inputs.rglob("*") if p.is_file())
    run = Run("convert", files)
    args = [
        "convert",
        str(inputs),
        "-o",
        str(out),
        "--jobs",
        str(jobs),
        "--on-uncertain",
        "convert",
        "--no-fsync",
        *extra,
    ]
    proc, run.seconds, run.peak_rss = _run(args, timeout)
    if not _common(run, proc, timeout):
        return run
    report_path = out / "orthovision-report.json"
    if not report_path.exists():
        run.problems.append("no report written")
        return run
    report = json.loads(report_path.read_text())
    known = documented_reasons()
    written = {p.relative_to(out).as_posix() for p in out.rglob("*.dcm")}
    for f in report["files"]:
        run.counts[f"{f['status']}:{f['reason']}" if f["reason"] else f["status"]] += 1
        where = f["rel"]
        if f["reason"] and f["reason"] not in known:
            run.problems.append(f"{where}: undocumented reason {f['reason']!r}")
        if f["reason"] == "internal-error":
            run.problems.append(f"{where}: internal error: {f['message'][:200]}")
        if "\n" in f["message"] or "Traceback" in f["message"]:
            run.problems.append(f"{where}: message of more than one line")
        if f["status"] == "failed" and f["outputs"]:
            run.problems.append(f"{where}: failed, yet has outputs {f['outputs']}")
        if f["status"] == "converted":
            missing = [o for o in f["outputs"] if o not in written]
            if missing:
                run.problems.append(f"{where}: outputs missing {missing}")
    left = [p.name for p in out.rglob(".orthovision-tmp-*")]
    if left:
        run.problems.append(f"temporary files left: {left[:5]}")
    run.problems.extend(_unreadable_outputs(out))
    return run


def _unreadable_outputs(out: Path) -> list[str]:
    import pydicom

    bad = []
    for path in sorted(out.rglob("*.dcm")):
        try:
            ds = pydicom.dcmread(path)
            if int(ds.Rows) < 1 or int(ds.Columns) < 1 or "PixelData" not in ds:
                bad.append(f"{path.name}: no pixels")
        except Exception as exc:
            bad.append(f"{path.name}: pydicom cannot read it: {exc}")
    return bad


def classify(inputs: Path, *, timeout: float = 600.0) -> Run:
    files = sum(1 for p in inputs.rglob("*") if p.is_file())
    run = Run("classify", files)
    proc, run.seconds, run.peak_rss = _run(["classify", str(inputs), "--format", "json"], timeout)
    if not _common(run, proc, timeout):
        return run
    assert proc is not None
    try:
        rows = json.loads(proc.stdout)["images"]
    except (ValueError, KeyError) as exc:
        run.problems.append(f"classify printed no JSON: {exc}")
        return run
    known = documented_reasons()
    for row in rows:
        err = row["error"]
        reason = err.split(":", 1)[0] if err else ""
        run.counts[f"error:{reason}" if err else "classified"] += 1
        if err and reason not in known:
            run.problems.append(f"{row['path']}: undocumented classify error {err[:120]!r}")
        if err and reason == "internal-error":
            run.problems.append(f"{row['path']}: internal error {err[:200]}")
    return run
