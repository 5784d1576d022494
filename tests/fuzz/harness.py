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

from orthovision_cli.batch.report import read_report, report_files

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
        errors="replace",
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
    report = {**read_report(out), "files": list(report_files(out))}  # every input: the .jsonl
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
    if (out / ".orthovision" / "archives").exists() and not report["counts"].get("review"):
        run.problems.append("extracted zip members left after the run")
    run.problems.extend(_unreadable_outputs(out))
    run.problems.extend(silent_losses(inputs, report["files"]))
    return run


def silent_losses(inputs: Path, files: list[dict[str, object]]) -> list[str]:
    """Every input in the report exactly once: each file below `inputs` by its path, each zip
    as itself (refused, unreadable) or as its image members, one entry each (issue 23)."""
    import zipfile

    from orthovision_cli.batch.walk import CLUTTER_DIRS, is_clutter
    from orthovision_cli.inputs.formats import IMAGE_SUFFIXES

    rels = Counter(str(f["rel"]) for f in files)
    problems = [f"{rel!r} is in the report {n} times" for rel, n in rels.items() if n > 1]
    for path in sorted(inputs.rglob("*")):
        if not path.is_file() or is_clutter(path.name):
            continue
        rel = path.relative_to(inputs).as_posix()
        if not rel.lower().endswith(".zip"):
            if rels[rel] != 1:
                problems.append(f"silent loss: {rel!r} is not in the report")
            continue
        members = -1
        try:
            with zipfile.ZipFile(path) as zf:
                members = sum(
                    1
                    for i in zf.infolist()
                    if not i.is_dir()
                    and Path(i.filename).suffix.lower() in IMAGE_SUFFIXES
                    and not any(is_clutter(p) for p in i.filename.replace("\\", "/").split("/"))
                    and not any(
                        p.lower() in CLUTTER_DIRS for p in i.filename.replace("\\", "/").split("/")[:-1]
                    )
                )
        except Exception:
            pass
        inside = sum(n for r, n in rels.items() if r.startswith(rel + "/"))
        if rels[rel] == 1 and inside == 0:
            continue  # the archive itself failed, with its reason
        if members >= 0 and inside != members:
            problems.append(f"silent loss: {rel!r} holds {members} images, {inside} in the report")
        elif members < 0:
            problems.append(f"silent loss: {rel!r} is not in the report")
    return problems


def dciodvfy_errors(out: Path) -> list[str]:
    """dciodvfy's errors on every DICOM written (none allowed)."""
    import shutil

    exe = shutil.which("dciodvfy")
    if exe is None:
        return ["dciodvfy is not installed"]
    bad = []
    for path in sorted(out.rglob("*.dcm")):
        proc = subprocess.run([exe, "-new", str(path)], capture_output=True, text=True, timeout=120)
        errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("Error")]
        if errors:
            bad.append(f"{path.relative_to(out)}: dciodvfy: {errors[0][:200]}")
    return bad


def convert_manifest(inputs: Path, manifest: Path, out: Path, *, timeout: float = 120.0) -> Run:
    """One hand-typed manifest's run: refused at once in one line (exit 2, nothing written),
    or converted with every input reported and every output dciodvfy-clean."""
    run = Run("convert --manifest", sum(1 for p in inputs.rglob("*") if p.is_file()))
    args = ["convert", str(inputs), "-o", str(out), "--manifest", str(manifest), "--no-models"]
    proc, run.seconds, run.peak_rss = _run([*args, "--jobs", "1", "--no-fsync"], timeout)
    if proc is not None and proc.returncode == 2:
        run.exit_code = 2
        if "Traceback" in proc.stderr + proc.stdout:
            run.problems.append(f"traceback: {proc.stderr[:300]!r}")
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        if len(lines) != 1 or not lines[0].startswith("error:"):
            run.problems.append(f"usage error not in one line: {proc.stderr[:300]!r}")
        if list(out.rglob("*.dcm")):
            run.problems.append("a refused manifest left DICOM written")
        run.counts["refused"] += 1
        return run
    if not _common(run, proc, timeout):
        return run
    report_path = out / "orthovision-report.json"
    if not report_path.exists():
        run.problems.append("no report written")
        return run
    report = {**read_report(out), "files": list(report_files(out))}  # every input: the .jsonl
    for f in report["files"]:
        run.counts[f"{f['status']}:{f['reason']}" if f["reason"] else f["status"]] += 1
        if f["reason"] == "internal-error":
            run.problems.append(f"{f['rel']}: internal error: {f['message'][:200]}")
    run.problems.extend(silent_losses(inputs, report["files"]))
    run.problems.extend(dciodvfy_errors(out))
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
