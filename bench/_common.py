"""Shared by the benchmarks: the sample corpus and a service started as its own process."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data"
SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".jp2"}


def corpus(root: Path = CORPUS, limit: int | None = None) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES)
    return files[:limit] if limit else files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@contextlib.contextmanager
def service(workers: int = 2, rules: bool = False, queue_size: int = 32) -> Iterator[tuple[str, int]]:
    """`orthovision serve` in a subprocess; yields (base URL, pid)."""
    port = free_port()
    cmd = [
        sys.executable, "-c", "from orthovision_cli.cli import main; main()", "serve",
        "--port", str(port), "--workers", str(workers), "--queue-size", str(queue_size),
    ]
    if rules:
        cmd.append("--rules")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/metadata", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError("the service did not start")
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
