"""`GET /Task`, `GET /Task/{id}` and its event stream (`Accept: text/event-stream` or
`/Task/{id}/$events`): the Task as the service shows it, pushed on every change."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ...fhir import ig
from ..context import Service, service
from ..http import FhirResponse, page_size
from ..store import TaskRecord, task_resource


def get_task(svc: Service, request: Request) -> TaskRecord:
    rec = svc.store.task(request.path_params["id"])
    if rec is None:
        raise HTTPException(404, f"no Task {request.path_params['id']}")
    return rec


async def read_task(request: Request) -> Response:
    svc = service(request)
    rec = get_task(svc, request)
    if "text/event-stream" in request.headers.get("accept", ""):
        return task_events(svc, rec.id)
    return FhirResponse(task_resource(rec, svc.device_id))


async def read_task_events(request: Request) -> Response:
    svc = service(request)
    return task_events(svc, get_task(svc, request).id)


def task_events(svc: Service, task_id: str) -> Response:
    """Server-sent events: the Task each time it changes, until it is final."""
    store = svc.store

    async def stream() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        wake: asyncio.Queue[None] = asyncio.Queue()

        def poke(_: str) -> None:
            with contextlib.suppress(RuntimeError):  # loop closed: the client went away
                loop.call_soon_threadsafe(wake.put_nowait, None)

        remove = store.listen(task_id, poke)
        try:
            last, n = "", 0
            while True:
                rec = store.task(task_id)
                if rec is None:
                    break
                body = json.dumps(task_resource(rec, svc.device_id), separators=(",", ":"))
                if body != last:
                    n += 1
                    last = body
                    yield f"event: task\nid: {n}\ndata: {body}\n\n"
                if rec.final:
                    break
                try:
                    await asyncio.wait_for(wake.get(), svc.cfg.sse_keepalive)
                except TimeoutError:
                    yield ": keepalive\n\n"
        finally:
            remove()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def search_tasks(request: Request) -> Response:
    svc = service(request)
    statuses = request.query_params.getlist("status")
    wanted = {s for v in statuses for s in v.split(",") if s} or None
    recs = svc.store.search_tasks(wanted, page_size(request))
    return FhirResponse(ig.searchset([task_resource(r, svc.device_id) for r in recs], svc.base_url(request)))


routes = [
    Route("/Task", search_tasks, methods=["GET"]),
    Route("/Task/{id}", read_task, methods=["GET"]),
    Route("/Task/{id}/$events", read_task_events, methods=["GET"]),
]
