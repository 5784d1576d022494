"""HTTP pieces every route of the reference service shares: the FHIR JSON response, the
OperationOutcome error, the Host and Origin guard, bearer authentication, and the exception
handlers."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

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


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Every answer: not for other sites to embed or sniff, and never kept by a shared cache.
EXTRA_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
)


def _hostname(value: str) -> str | None:
    """The host of a Host header or an Origin's netloc, lower case, brackets and port off;
    None when it is not one."""
    try:
        name = urlsplit(f"//{value}").hostname
    except ValueError:
        return None
    return name or None


class HostGuard:
    """Pure ASGI middleware against DNS rebinding and cross-site requests, on every route
    (`/metadata` too). A Host that is an IP address, `localhost` or a name given with
    `--allow-host` is served; any other name is refused (a web page that made its own name
    resolve to this address); `*` serves any. A request other than GET/HEAD/OPTIONS with an
    `Origin` that is not this very Host is refused. Every answer gets EXTRA_HEADERS."""

    def __init__(self, app: ASGIApp, allow_hosts: Iterable[str] = ()) -> None:
        self.app = app
        names = {h.strip().lower().rstrip(".") for h in allow_hosts if h.strip()}
        self._any = "*" in names
        self._names = frozenset({"localhost", *names})

    def host_ok(self, host: str) -> bool:
        if self._any:
            return True
        name = _hostname(host)
        if name is None:
            return False
        try:
            ipaddress.ip_address(name)
            return True  # an address typed by the client: no name another site can rebind
        except ValueError:
            return name.rstrip(".") in self._names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        host = headers.get(b"host")
        refusal = ""
        if host is not None and not self.host_ok(host):
            refusal = "the Host header names no address of this service (see --allow-host)"
        elif scope.get("method", "GET") not in SAFE_METHODS and b"origin" in headers:
            origin = urlsplit(headers[b"origin"])
            if origin.scheme not in ("http", "https") or (host or "").lower() != origin.netloc.lower():
                refusal = "a request from another site (Origin) is refused"

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", ())}
                extra = [(k, v) for k, v in EXTRA_HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        if refusal:
            resp = error(403, refusal, issue_code="forbidden")
            await resp(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


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
