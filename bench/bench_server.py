"""The reference service: classifications per second on the sample corpus at 2 workers, and
its memory under a burst of 200 concurrent submissions (bounded queue: 429s, no collapse).

    python bench/bench_server.py [--rules] [--limit N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from orthovision_cli.fhir import ig
from orthovision_cli.remote.sanitize import sanitize_bytes

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
        sys.executable,
        "-c",
        "from orthovision_cli.cli import main; main()",
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--queue-size",
        str(queue_size),
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


def bundles(files: list[Path]) -> list[bytes]:
    out = []
    for f in files:
        try:
            data, ctype = sanitize_bytes(f.read_bytes())
        except Exception:
            continue
        out.append(json.dumps(ig.submission_bundle(data, ctype, ["modality", "protocol"])).encode())
    return out


def wait_all(client: httpx.Client, tids: list[str]) -> int:
    done = 0
    for tid in tids:
        while True:
            status = client.get(f"Task/{tid}").json()["status"]
            if status in ig.FINAL_STATES:
                done += status == "completed"
                break
            time.sleep(0.02)
    return done


def throughput(url: str, payloads: list[bytes]) -> tuple[float, int, float]:
    headers = {"Content-Type": ig.FHIR_JSON}
    with httpx.Client(base_url=url + "/", timeout=60) as c:
        before = c.get("_stats").json()
        t0 = time.perf_counter()
        tids = []
        for body in payloads:
            while True:
                r = c.post("Bundle", content=body, headers=headers)
                if r.status_code != 429:
                    break
                time.sleep(0.05)
            tids.append(r.json()["entry"][-1]["resource"]["id"])
        ok = wait_all(c, tids)
        wall = time.perf_counter() - t0
        after = c.get("_stats").json()
    busy = after["busy_seconds"] - before["busy_seconds"]
    return ok / wall, ok, busy / (wall * after["workers"])


def burst(url: str, pid: int, payload: bytes, n: int = 200) -> dict[str, object]:
    codes: list[int | str] = []
    lock = threading.Lock()
    start = threading.Barrier(n + 1)
    peak = [rss_bytes(pid)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes(pid))
            time.sleep(0.01)

    def one() -> None:
        with httpx.Client(timeout=60) as c:
            start.wait()
            try:
                code: int | str = c.post(
                    f"{url}/Bundle", content=payload, headers={"Content-Type": ig.FHIR_JSON}
                ).status_code
            except httpx.HTTPError as exc:
                code = type(exc).__name__
        with lock:
            codes.append(code)

    base = rss_bytes(pid)
    threads = [threading.Thread(target=one) for _ in range(n)]
    sampler = threading.Thread(target=sample)
    sampler.start()
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    time.sleep(0.2)
    stop.set()
    sampler.join()
    alive = httpx.get(f"{url}/metadata", timeout=5).status_code == 200
    summary: dict[str, int] = {}
    for c in codes:
        summary[str(c)] = summary.get(str(c), 0) + 1
    return {
        "answers": summary,
        "seconds": round(wall, 2),
        "rss_before_mib": round(base / 2**20, 1),
        "rss_peak_mib": round(peak[0] / 2**20, 1),
        "alive_after": alive,
        "payload_kib": round(len(payload) / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", action="store_true", help="colour rules instead of the model pack")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    files = corpus(limit=args.limit)
    payloads = bundles(files)
    with service(workers=2, rules=args.rules) as (url, pid):
        # warm-up (model load, first inference)
        throughput(url, payloads[:2])
        rate, ok, util = throughput(url, payloads)
        print(f"classifier: {'colour rules' if args.rules else 'model pack'}; workers: 2")
        print(f"corpus: {len(payloads)} images, {ok} completed")
        print(f"throughput: {rate:.1f} classifications/s (worker utilisation {util:.0%})")
        small = min(payloads, key=len)
        print("burst of 200 concurrent submissions:", json.dumps(burst(url, pid, small)))
        big = sorted(payloads, key=len)[len(payloads) // 2]
        print("burst of 200 (median-size image):", json.dumps(burst(url, pid, big)))


if __name__ == "__main__":
    main()
