"""`orthovision watch`: a real hot folder, real processes. Files copied in slowly are never read
half-written; a kill -9 mid-run and a restart lose nothing and convert nothing twice; SIGTERM
stops cleanly; `--once` for cron."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from testdata import DATA, run_report

pytestmark = pytest.mark.slow

PHOTOS = sorted((DATA / "photos" / "faces_canada").glob("*.jpg")) + sorted(
    (DATA / "photos" / "faces_london" / "rest").glob("*.jpg")
)
BATCH_COPIES = 4
LABELS = ["--no-models", "--modality", "XC", "--body-part", "HEAD", "--patient-id", "W1"]


def _start(inbox: Path, out: Path, *extra: str) -> tuple[subprocess.Popen[str], list[str]]:
    """The watcher, and its output lines as they come (read by a thread)."""
    cmd = [
        sys.executable,
        "-m",
        "orthovision_cli",
        "watch",
        str(inbox),
        "-o",
        str(out),
        "-j",
        "1",
        "--interval",
        "0.2",
        "--settle",
        "1.0",
        *LABELS,
        *extra,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert proc.stdout is not None
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    return proc, lines


def _rows(out: Path) -> dict[str, str]:
    db = out / ".orthovision" / "state.sqlite"
    if not db.exists():
        return {}
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return dict(con.execute("SELECT path, status FROM inputs").fetchall())
    except sqlite3.Error:
        return {}
    finally:
        con.close()


def _wait(cond: object, what: str, timeout: float = 90, poll: float = 0.1) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():  # type: ignore[operator]
            return
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def _late_status(out: Path) -> tuple[str, str] | None:
    try:
        report = run_report(out)
    except (OSError, ValueError):
        return None
    hits = [(f["status"], f["reason"]) for f in report["files"] if f["rel"].endswith("late_copy.jpg")]
    return hits[0] if hits else None


def _copy_slowly(src: Path, dest: Path, pieces: int = 5, pause: float = 0.35) -> None:
    """As a slow card reader would: the file grows in pieces, pauses shorter than --settle."""
    data = src.read_bytes()
    step = len(data) // pieces + 1
    with dest.open("wb") as f:
        for i in range(0, len(data), step):
            f.write(data[i : i + step])
            f.flush()
            time.sleep(pause)


def _stop(proc: subprocess.Popen[str], lines: list[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    time.sleep(0.2)  # the reader thread takes the last lines
    return proc.returncode, "".join(lines)


def test_hot_folder_slow_copies_kill_and_restart(tmp_path: Path) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    card = inbox / "DCIM" / "100CANON"
    card.mkdir(parents=True)
    proc, lines = _start(inbox, out)
    try:
        # Slow copies: each one is read only once it is complete.
        for src in PHOTOS[:3]:
            _copy_slowly(src, card / src.name)
        _wait(lambda: sum(s == "done" for s in _rows(out).values()) == 3, "the slow copies")
        # A batch arrives at once (distinct files: the same pictures with bytes after the
        # image); kill -9 as soon as a few of it are written.
        for src in PHOTOS[3:]:
            shutil.copy2(src, card / src.name)
        for n in range(1, BATCH_COPIES):
            for src in PHOTOS:
                (card / f"{src.stem}_{n}.jpg").write_bytes(src.read_bytes() + bytes(n))
        _wait(
            lambda: any(ln.startswith("orthovision: writing") for ln in lines),
            "the batch's writes",
            poll=0.002,
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = sum(s == "done" for s in _rows(out).values())
    total = len(PHOTOS) * BATCH_COPIES
    assert killed_at < total  # the kill came in the middle of the batch

    proc, lines = _start(inbox, out)
    try:
        _wait(lambda: sum(s == "done" for s in _rows(out).values()) == total, "the restart to finish")
        # One more file while it runs; once its run is over (the watcher says so), a clean stop.
        _copy_slowly(PHOTOS[0], card / "late_copy.jpg")
        _wait(lambda: _late_status(out) is not None, "the late file")
        _wait(lambda: any("nothing new" in ln for ln in lines), "the late file's run to end")
    finally:
        code, text = _stop(proc, lines) if proc.poll() is None else (proc.returncode, "".join(lines))
    assert code == 0, text
    assert "stopped" in text

    rows = _rows(out)
    names = [p.name for p in PHOTOS] + [f"{p.stem}_{n}.jpg" for n in range(1, BATCH_COPIES) for p in PHOTOS]
    # Same content as an earlier file: recognised, not converted twice, and recorded as such.
    assert rows == {**{str(card / name): "done" for name in names}, str(card / "late_copy.jpg"): "unchanged"}
    assert _late_status(out) == ("unchanged", "duplicate")
    dcm = sorted(out.rglob("*.dcm"))
    assert len(dcm) == total, [p.name for p in dcm]  # each once, no _2 twins
    assert not [p for p in out.rglob("*") if p.name.startswith(".orthovision-tmp-")]
    report = run_report(out)
    assert not [f for f in report["files"] if f["status"] == "failed"]
    print(f"killed after {killed_at} of {total} files")


def test_watch_once_for_cron(tmp_path: Path) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "orthovision_cli",
        "watch",
        str(inbox),
        "-o",
        str(out),
        "--once",
        "--settle",
        "0.3",
        "-j",
        "1",
        *LABELS,
    ]
    empty = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert empty.returncode == 3, empty.stderr  # nothing found, as convert says
    for src in PHOTOS[:2]:
        shutil.copy2(src, inbox / src.name)
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "2 converted" in first.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "converted" not in again.stderr
    assert len(list(out.rglob("*.dcm"))) == 2
    # A file that is still growing is left for the next run.
    grower = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys,time\n"
                f"data=open({str(PHOTOS[2])!r},'rb').read()\n"
                f"f=open({str(inbox / 'growing.jpg')!r},'wb')\n"
                "for i in range(0,len(data),len(data)//8+1):\n"
                "    f.write(data[i:i+len(data)//8+1]); f.flush(); time.sleep(0.1)\n"
            ),
        ]
    )
    try:
        during = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        grower.wait(timeout=30)
    assert during.returncode in (0, 4), during.stderr
    report = run_report(out)
    assert not [f for f in report["files"] if f["status"] == "failed"], report
    after = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert after.returncode == 0, after.stderr
    assert len(list(out.rglob("*.dcm"))) == 3
    assert os.path.getsize(inbox / "growing.jpg") == PHOTOS[2].stat().st_size


def test_watch_once_sends_to_a_real_orthanc(tmp_path: Path) -> None:
    import pydicom
    from orthanc import Orthanc

    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    for src in PHOTOS[:3]:
        shutil.copy2(src, inbox / src.name)
    pacs = Orthanc(tmp_path / "orthanc").start()
    try:
        cmd = [
            sys.executable,
            "-m",
            "orthovision_cli",
            "watch",
            str(inbox),
            "-o",
            str(out),
            "--once",
            "--settle",
            "0.3",
            "-j",
            "1",
            *LABELS,
            "--send",
            pacs.dest,
        ]
        first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert first.returncode == 0, first.stderr
        written = {
            str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in out.rglob("*.dcm")
        }
        assert len(written) == 3 and sorted(pacs.sop_uids()) == sorted(written)
        # A new file: only it is converted and sent.
        shutil.copy2(PHOTOS[3], inbox / PHOTOS[3].name)
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert second.returncode == 0, second.stderr
        assert len(pacs.sop_uids()) == 4 == len(set(pacs.sop_uids()))
    finally:
        pacs.stop()
