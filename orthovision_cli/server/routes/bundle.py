"""`POST [base]` and `POST [base]/Bundle`: an OrthovisionAIBundle is checked, stored and queued,
and answered at once with the transaction response (Task `in-progress`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from ... import jsonlimits
from ...fhir import bundles, ig
from ...fhir.validate import BundleRejected, Submission, parse_submission
from ...vocab.tags import normalise_tag
from ..context import Service, service
from ..http import FhirResponse, error
from ..store import TaskRecord, task_resource


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed `max_bytes`."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise BundleRejected(
            f"request larger than {max_bytes} bytes", error_code="image-too-large", status=413
        )
    chunks, size = [], 0
    # A client that stalls, or sends a byte a second, holds a connection and a buffer: each
    # chunk must come within the idle timeout and the whole body within the body timeout.
    svc = service(request)
    deadline = time.monotonic() + svc.cfg.body_timeout
    stream = request.stream().__aiter__()
    while True:
        wait = min(svc.cfg.idle_timeout, deadline - time.monotonic())
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), timeout=max(0.0, wait))
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise BundleRejected(
                "the request body came too slowly",
                error_code="invalid-bundle",
                issue_code="timeout",
                status=408,
            ) from None
        size += len(chunk)
        if size > max_bytes:
            raise BundleRejected(
                f"request larger than {max_bytes} bytes", error_code="image-too-large", status=413
            )
        chunks.append(chunk)
    return b"".join(chunks)


def check(svc: Service, body: bytes) -> Submission:
    try:
        data = jsonlimits.loads(body)
    except jsonlimits.JsonLimitError as exc:
        raise BundleRejected(f"the body is refused: {exc}") from None
    return parse_submission(
        data,
        supported=svc.supported,
        max_image_bytes=svc.cfg.max_upload_bytes,
        normalise=normalise_tag,
    )


async def submit(request: Request) -> Response:
    svc = service(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in (ig.FHIR_JSON, "application/json", ""):
        return error(415, f"send {ig.FHIR_JSON}, not {ctype}", issue_code="not-supported")
    try:
        body = await read_body(request, svc.cfg.max_upload_bytes)
        sub = await run_in_threadpool(check, svc, body)
    except ClientDisconnect:  # the client went away mid-upload: nobody to answer, nothing to log
        return Response(status_code=400)
    except BundleRejected as exc:
        return error(exc.status, exc.diagnostics, error_code=exc.error_code, issue_code=exc.issue_code)
    del body
    if not svc.pool.try_admit():
        return error(
            429,
            f"the service is busy ({svc.pool.capacity} Tasks queued); retry later",
            error_code="rate-limit-exceeded",
            issue_code="throttled",
            headers={"Retry-After": str(svc.cfg.retry_after)},
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
    svc.store.add(rec, sub.image)
    # The Task as accepted (in-progress), rendered before a worker can finish it: the answer
    # to the POST describes the submission, later states are read with GET /Task/{id}.
    task: dict[str, Any] = task_resource(rec, svc.device_id)
    svc.pool.submit(rec.id)
    return FhirResponse(
        bundles.transaction_response(
            binary_id=rec.binary_id,
            study_id=rec.study_id,
            task=task,
            task_url=f"{svc.base_url(request)}/Task/{rec.id}",
            last_modified=rec.last_modified,
        )
    )


routes = [
    Route("/", submit, methods=["POST"]),
    Route("/Bundle", submit, methods=["POST"]),
]
