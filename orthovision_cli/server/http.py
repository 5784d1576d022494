"""HTTP pieces every route of the reference service shares: the FHIR JSON response, the
OperationOutcome error, bearer authentication, and the exception handlers."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..fhir import ig

log = logging.getLogger("orthovision_cli.server.app")

HTTP_ISSUE = {
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    410: "deleted",
}


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
    return error(500, "internal error", error_code="service-unavailable", issue_code="exception")


def page_size(request: Request) -> int:
    """`_count` of a search, within [0, 500]; 50 when absent or not a number."""
    raw = request.query_params.get("_count", "50")
    return max(0, min(500, int(raw))) if raw.isdigit() else 50
