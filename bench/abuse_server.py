"""`orthovision serve` under a hostile network (issue 16), while a normal client keeps working.

Starts the service as its own process (the bundled model pack), measures its RSS, then for
`--seconds`: absurd JSON (100,000-deep arrays, Bundles with a 500-deep extension, 5000-digit
numbers), 256 idle sockets held open, headers sent a byte at a time, uploads abandoned midway;
meanwhile a normal client submits the sample image and reads /metadata in a loop. Reports
the status codes seen by each side, the normal client's failures, and the service's RSS
before, at peak and 5 s after the abuse.

    python bench/abuse_server.py --seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx
import psutil

from orthovision_cli.fhir import ig
from orthovision_cli.fhir.conformance import sample_image

IMAGE, CTYPE = sample_image()
HEADERS = {"Content-Type": ig.FHIR_JSON}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def deep_bundle(depth: int) -> bytes:
    bundle = ig.submission_bundle(IMAGE, CTYPE, ["modality"])
    bundle["entry"][0]["resource"]["extension"] = ["DEEP"]
    deep = '{"url": "x", "extension": [' * depth + '{"url": "x", "valueString": "y"}' + "]}" * depth
    return json.dumps(bundle).replace('"DEEP"', deep).encode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "orthovision_cli", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CI": ""},
    )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/metadata", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        server = psutil.Process(proc.pid)
        httpx.post(
            f"{url}/Bundle",
            json=ig.submission_bundle(IMAGE, CTYPE, ["modality"]),
            headers=HEADERS,
            timeout=30,
        )  # warm: the model loaded, one Task done
        time.sleep(1)
        before = server.memory_info().rss
        stop = threading.Event()
        peak = [before]
        abuse: Counter[str] = Counter()
        normal: Counter[str] = Counter()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], server.memory_info().rss)
                time.sleep(0.05)

        def json_abuse() -> None:
            bodies = [
                b"[" * 100_000 + b"]" * 100_000,
                deep_bundle(500),
                b'{"resourceType": "Bundle", "total": ' + b"9" * 5000 + b"}",
            ]
            with httpx.Client(timeout=30) as c:
                i = 0
                while not stop.is_set():
                    r = c.post(f"{url}/Bundle", content=bodies[i % 3], headers=HEADERS)
                    abuse[f"json {r.status_code}"] += 1
                    i += 1

        def socket_abuse() -> None:
            idle: list[socket.socket] = []
            while not stop.is_set():
                try:
                    while len(idle) < 256:
                        idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                    slow = socket.create_connection(("127.0.0.1", port), timeout=5)
                    for b in b"GET /metadata HTTP/1.1\r\n":
                        slow.sendall(bytes([b]))
                        time.sleep(0.01)
                    slow.close()
                    up = socket.create_connection(("127.0.0.1", port), timeout=5)
                    up.sendall(
                        b"POST /Bundle HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/"
                        b'fhir+json\r\nContent-Length: 1000000\r\n\r\n{"resourceType":'
                    )
                    up.close()  # abandoned midway
                    abuse["abandoned uploads"] += 1
                    # Replace the idle sockets the service has closed.
                    idle = [s for s in idle if _alive(s)]
                except OSError:
                    abuse["socket errors"] += 1
                    time.sleep(0.1)
            for s in idle:
                s.close()

        def normal_client() -> None:
            with httpx.Client(timeout=10) as c:
                while not stop.is_set():
                    try:
                        r = c.get(f"{url}/metadata")
                        normal[f"metadata {r.status_code}"] += 1
                        r = c.post(
                            f"{url}/Bundle",
                            json=ig.submission_bundle(IMAGE, CTYPE, ["modality"]),
                            headers=HEADERS,
                        )
                        normal[f"submit {r.status_code}"] += 1
                    except httpx.HTTPError as exc:
                        normal[f"error {type(exc).__name__}"] += 1
                    time.sleep(0.2)

        threads = [
            threading.Thread(target=f, daemon=True) for f in (sample, json_abuse, socket_abuse, normal_client)
        ]
        for t in threads:
            t.start()
        time.sleep(args.seconds)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        time.sleep(5)
        after = server.memory_info().rss
        five_xx = sum(n for k, n in (abuse + normal).items() if k.split()[-1].startswith("5"))
        print(
            json.dumps(
                {
                    "seconds": args.seconds,
                    "abuse": dict(abuse),
                    "normal_client": dict(normal),
                    "5xx": five_xx,
                    "rss_mib": {"before": before >> 20, "peak": peak[0] >> 20, "after_5s": after >> 20},
                    "tracebacks_logged": proc.stderr is not None and _tracebacks(proc),
                },
                indent=2,
            )
        )
        return 1 if five_xx else 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _alive(s: socket.socket) -> bool:
    try:
        s.setblocking(False)
        data = s.recv(1, socket.MSG_PEEK)
        s.setblocking(True)
        if data == b"":
            s.close()
            return False
        return True
    except BlockingIOError:
        s.setblocking(True)
        return True
    except OSError:
        s.close()
        return False


def _tracebacks(proc: subprocess.Popen[str]) -> int:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        return -1
    return err.count("Traceback")


if __name__ == "__main__":
    sys.exit(main())
