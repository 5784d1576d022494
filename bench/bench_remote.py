"""The remote client against the reference service on loopback: images/s at concurrency 1, 4
and 16, next to the service's own capacity measured in the same run (from its workers' busy
time: capacity = completed / (busy seconds / workers)). Target: >= 90 % busy.

    python bench/bench_remote.py [--rules] [--limit N] [--no-sse]
"""

from __future__ import annotations

import argparse
import time

import httpx
from bench_server import corpus, service

from orthovision_cli.config import RemoteSettings
from orthovision_cli.inputs.source import SourceImage
from orthovision_cli.labels.model import Labels
from orthovision_cli.remote import build_remote_source


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", action="store_true", help="colour rules instead of the model pack")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--no-sse", action="store_true", help="poll only")
    args = ap.parse_args()
    images = [SourceImage(path=p, rel=p.name) for p in corpus(limit=args.limit)]
    with service(workers=2, rules=args.rules, queue_size=64) as (url, _pid):
        print(
            f"classifier: {'colour rules' if args.rules else 'model pack'}; service workers: 2;"
            f" {len(images)} images; {'polling' if args.no_sse else 'SSE where offered'}"
        )
        with build_remote_source(url, RemoteSettings(concurrency=16), use_sse=not args.no_sse) as rc:
            list(rc.classify_many(images[:4], concurrency=2))  # warm-up
            for n in (1, 4, 16):
                before = httpx.get(f"{url}/_stats").json()
                t0 = time.perf_counter()
                results = list(rc.classify_many(images, concurrency=n))
                wall = time.perf_counter() - t0
                after = httpx.get(f"{url}/_stats").json()
                ok = sum(isinstance(r, Labels) for _, r in results)
                busy = after["busy_seconds"] - before["busy_seconds"]
                done = after["completed"] - before["completed"]
                workers = after["workers"]
                capacity = done / (busy / workers) if busy else float("nan")
                print(
                    f"concurrency {n:>2}: {ok / wall:6.2f} images/s ({ok}/{len(images)} ok, "
                    f"{wall:5.1f} s); service capacity {capacity:6.2f} images/s; "
                    f"service busy {busy / (wall * workers):4.0%}"
                )


if __name__ == "__main__":
    main()
