"""`GET /_stats`: queue, store and memory figures for benchmarks (not part of the IG)."""

from __future__ import annotations

import os
import resource

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..context import service


def _rss() -> tuple[int, int]:
    try:
        with open("/proc/self/statm") as f:
            current = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        current = 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return current, peak


async def stats(request: Request) -> Response:
    svc = service(request)
    rss, peak = _rss()
    return JSONResponse({**svc.pool.stats(), **svc.store.counts(), "rss_bytes": rss, "peak_rss_bytes": peak})


routes = [Route("/_stats", stats, methods=["GET"])]
