"""The reference Orthovision AI IG service as a Starlette ASGI app (optional extra `[server]`).

`create_app(classifier, config)` returns the app; `orthovision serve` runs it with uvicorn, tests
run it on an ephemeral port. Submissions are checked (OrthovisionAIBundle), answered at once with
the transaction response (Task `in-progress`), and classified by a bounded worker pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import resource
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import __version__
from ..fhir import ig
from ..fhir.validate import BundleRejected, parse_submission
from ..labels.model import normalise_tag
from .config import ServerConfig, classifier_tags
from .store import Store, TaskRecord, task_resource
from .workers import WorkerPool

log = logging.getLogger(__name__)


class FhirResponse(JSONResponse):
    media_type = ig.FHIR_JSON

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def error(
    status: int,
    diagnostics: str,
    *,
    error_code: str | None = None,
    issue_code: str = "invalid",
    headers: Mapping[str, str] | None = None,
) -> FhirResponse:
    body = ig.outcome(diagnostics, error_code=error_code, issue_code=issue_code)
    return FhirResponse(body, status_code=status, headers=dict(headers or {}))


HTTP_ISSUE = {
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    410: "deleted",
}


class BearerAuth:
    """Pure ASGI middleware: every request but `GET /metadata` needs the bearer token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/").endswith("/metadata"):
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                given = value[7:].strip()
        if not hmac.compare_digest(given, self._token):
            resp = error(
                401,
                "a valid bearer token is required",
                issue_code="login",
                headers={"WWW-Authenticate": 'Bearer realm="orthovision"'},
            )
            await resp(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _rss() -> tuple[int, int]:
    try:
        with open("/proc/self/statm") as f:
            current = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        current = 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return current, peak


def create_app(
    classifier: Any, config: ServerConfig | None = None, *, base_path: str = ""
) -> Starlette:
    cfg = config or ServerConfig()
    tags = classifier_tags(classifier, cfg.tags)
    supported = frozenset(t for name in tags if (t := normalise_tag(name)))
    model_name = str(getattr(classifier, "name", None) or cfg.model_name)
    model_version = str(getattr(classifier, "version", None) or cfg.model_version)
    device_id = "model-" + "".join(ch if ch.isalnum() else "-" for ch in model_name)[:40]
    device = ig.device(device_id, name=model_name, version=model_version)
    store = Store(retention=cfg.retention, device_id=device_id)
    pool = WorkerPool(classifier, store, workers=cfg.workers, queue_size=cfg.queue_size)
    capability = ig.capability_statement(tags, software_version=__version__, auth=bool(cfg.token))

    def base_url(request: Request) -> str:
        return str(request.base_url).rstrip("/") + base_path

    async def metadata(request: Request) -> Response:
        return FhirResponse(capability)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cfg.max_upload_bytes:
            raise BundleRejected(
                f"request larger than {cfg.max_upload_bytes} bytes",
                error_code="image-too-large",
                status=413,
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > cfg.max_upload_bytes:
                raise BundleRejected(
                    f"request larger than {cfg.max_upload_bytes} bytes",
                    error_code="image-too-large",
                    status=413,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def check(body: bytes) -> Any:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleRejected(f"the body is not JSON: {exc}") from exc
        return parse_submission(
            data,
            supported=supported,
            max_image_bytes=cfg.max_upload_bytes,
            normalise=normalise_tag,
        )

    async def submit(request: Request) -> Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in (ig.FHIR_JSON, "application/json", ""):
            return error(415, f"send {ig.FHIR_JSON}, not {ctype}", issue_code="not-supported")
        try:
            body = await read_body(request)
            sub = await run_in_threadpool(check, body)
        except BundleRejected as exc:
            return error(
                exc.status, exc.diagnostics, error_code=exc.error_code, issue_code=exc.issue_code
            )
        del body
        if not pool.try_admit():
            return error(
                429,
                f"the service is busy ({pool.capacity} Tasks queued); retry later",
                error_code="rate-limit-exceeded",
                issue_code="throttled",
                headers={"Retry-After": str(cfg.retry_after)},
            )
        rec = TaskRecord(
            id=ig.new_id(),
            tags=sub.tags,
            binary_id=ig.new_id(),
            content_type=sub.content_type,
            study_id=ig.new_id() if sub.modality is not None else None,
            modality=sub.modality,
            authored_on=sub.authored_on,
        )
        store.add(rec, sub.image)
        # The Task as accepted (in-progress), rendered before a worker can finish it: the answer
        # to the POST describes the submission, later states are read with GET /Task/{id}.
        task = task_resource(rec, device_id)
        pool.submit(rec.id)
        entries: list[dict[str, Any]] = [
            {
                "response": {
                    "status": "201 Created",
                    "location": f"Binary/{rec.binary_id}/_history/1",
                }
            },
        ]
        if rec.study_id:
            entries.append(
                {
                    "response": {
                        "status": "201 Created",
                        "location": f"ImagingStudy/{rec.study_id}/_history/1",
                    }
                }
            )
        entries.append(
            {
                "fullUrl": f"{base_url(request)}/Task/{rec.id}",
                "resource": task,
                "response": {
                    "status": "201 Created",
                    "location": f"Task/{rec.id}/_history/1",
                    "lastModified": rec.last_modified,
                },
            }
        )
        return FhirResponse(
            {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
        )

    def get_task(request: Request) -> TaskRecord:
        rec = store.task(request.path_params["id"])
        if rec is None:
            raise HTTPException(404, f"no Task {request.path_params['id']}")
        return rec

    async def read_task(request: Request) -> Response:
        rec = get_task(request)
        if "text/event-stream" in request.headers.get("accept", ""):
            return task_events(request)
        return FhirResponse(task_resource(rec, device_id))

    def task_events(request: Request) -> Response:
        task_id = get_task(request).id

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
                    body = json.dumps(task_resource(rec, device_id), separators=(",", ":"))
                    if body != last:
                        n += 1
                        last = body
                        yield f"event: task\nid: {n}\ndata: {body}\n\n"
                    if rec.final:
                        break
                    try:
                        await asyncio.wait_for(wake.get(), cfg.sse_keepalive)
                    except TimeoutError:
                        yield ": keepalive\n\n"
            finally:
                remove()

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    def limit(request: Request) -> int:
        raw = request.query_params.get("_count", "50")
        return max(0, min(500, int(raw))) if raw.isdigit() else 50

    async def search_tasks(request: Request) -> Response:
        statuses = request.query_params.getlist("status")
        wanted = {s for v in statuses for s in v.split(",") if s} or None
        recs = store.search_tasks(wanted, limit(request))
        return FhirResponse(
            ig.searchset([task_resource(r, device_id) for r in recs], base_url(request))
        )

    async def read_observation(request: Request) -> Response:
        obs = store.observations.get(request.path_params["id"])
        if obs is None:
            raise HTTPException(404, f"no Observation {request.path_params['id']}")
        return FhirResponse(obs)

    async def search_observations(request: Request) -> Response:
        codes = {
            s.split("|")[-1]
            for v in request.query_params.getlist("code")
            for s in v.split(",")
            if s
        } or None
        found = store.search_observations(codes, limit(request))
        return FhirResponse(ig.searchset(found, base_url(request)))

    async def read_binary(request: Request) -> Response:
        bid = request.path_params["id"]
        data = store.binaries.get(bid)
        if data is None:
            if bid in store.gone:
                raise HTTPException(410, f"Binary {bid} was deleted when its Task ended")
            raise HTTPException(404, f"no Binary {bid}")
        rec = next((r for r in store.tasks.values() if r.binary_id == bid), None)
        import base64

        return FhirResponse(
            {
                "resourceType": "Binary",
                "id": bid,
                "contentType": rec.content_type if rec else "application/octet-stream",
                "data": base64.b64encode(data).decode("ascii"),
            }
        )

    async def read_study(request: Request) -> Response:
        sid = request.path_params["id"]
        if sid in store.studies:
            modality = store.studies[sid]
            study: dict[str, Any] = {
                "resourceType": "ImagingStudy",
                "id": sid,
                "status": "available",
                "subject": {"extension": [{"url": ig.EXT_DATA_ABSENT, "valueCode": "masked"}]},
            }
            if modality:
                study["modality"] = [{"coding": [{"system": ig.DCM, "code": modality}]}]
            return FhirResponse(study)
        if sid in store.gone:
            raise HTTPException(410, f"ImagingStudy {sid} was deleted when its Task ended")
        raise HTTPException(404, f"no ImagingStudy {sid}")

    async def read_device(request: Request) -> Response:
        if request.path_params["id"] != device_id:
            raise HTTPException(404, f"no Device {request.path_params['id']}")
        return FhirResponse(device)

    async def stats(request: Request) -> Response:
        rss, peak = _rss()
        return JSONResponse(
            {**pool.stats(), **store.counts(), "rss_bytes": rss, "peak_rss_bytes": peak}
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error(
            exc.status_code,
            str(exc.detail),
            issue_code=HTTP_ISSUE.get(exc.status_code, "processing"),
            headers=exc.headers,
        )

    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error(
            500, "internal error", error_code="service-unavailable", issue_code="exception"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def sweeper() -> None:
            while True:
                await asyncio.sleep(max(0.05, min(30.0, cfg.retention / 4)))
                store.sweep()

        task = asyncio.create_task(sweeper())
        try:
            yield
        finally:
            task.cancel()
            await run_in_threadpool(pool.close)

    routes: list[BaseRoute] = [
        Route("/metadata", metadata, methods=["GET"]),
        Route("/", submit, methods=["POST"]),
        Route("/Bundle", submit, methods=["POST"]),
        Route("/Task", search_tasks, methods=["GET"]),
        Route("/Task/{id}", read_task, methods=["GET"]),
        Route("/Task/{id}/$events", task_events_route(task_events), methods=["GET"]),
        Route("/Observation", search_observations, methods=["GET"]),
        Route("/Observation/{id}", read_observation, methods=["GET"]),
        Route("/Binary/{id}", read_binary, methods=["GET"]),
        Route("/ImagingStudy/{id}", read_study, methods=["GET"]),
        Route("/Device/{id}", read_device, methods=["GET"]),
        Route("/_stats", stats, methods=["GET"]),
    ]
    if base_path:
        routes = [Mount(base_path, routes=routes)]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: crash},
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.pool = pool
    app.state.device_id = device_id
    if cfg.token:
        app.add_middleware(BearerAuth, token=cfg.token)
    return app


def task_events_route(
    fn: Callable[[Request], Response],
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return fn(request)

    return endpoint
