"""Transport to one IG service: options, authentication, and one request with its retries.

Nothing here knows the IG workflow (that is `service`); tokens and headers are never logged, and
redirects are not followed (one could carry the token elsewhere).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from .. import jsonlimits
from ..config import RemoteSettings
from ..errors import RemoteError
from ..fhir import ig
from .bodies import Request
from .errors import (
    RemoteBadResponse,
    RemoteConnectError,
    RemoteDeadline,
    RemoteDropped,
    RemoteHTTPError,
    RemoteTimeout,
    RemoteTLSError,
    RemoteUnsupportedTag,
    outcome_line,
)
from .poll import RETRY_BACKOFF, Backoff, retry_after

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 502, 503, 504})
# The largest answer read into memory: FHIR resources of the IG are a few kilobytes; a service
# that sends 300 MB (or never stops) fails the image instead of taking the machine's memory.
MAX_RESPONSE_BYTES = 8 << 20


@dataclass(frozen=True)
class RemoteOptions:
    """How to talk to the service. `timeout` bounds each HTTP request; `deadline` bounds all the
    work for one image (submission, retries, waiting, results)."""

    base_url: str
    timeout: float = 30.0
    deadline: float = 300.0
    concurrency: int = 4
    post_to_base: bool = False
    max_attempts: int = 6
    use_sse: bool = True
    poll: Backoff = field(default_factory=Backoff)
    retry: Backoff = RETRY_BACKOFF

    @classmethod
    def for_service(cls, base_url: str, settings: RemoteSettings, *, use_sse: bool = True) -> RemoteOptions:
        """The options for one service of a run: its URL and the run's `--remote` settings."""
        return cls(
            base_url=base_url,
            timeout=settings.timeout,
            deadline=settings.image_deadline,
            concurrency=settings.concurrency,
            post_to_base=settings.post_to_base,
            use_sse=use_sse,
        )


class BearerAuth(httpx.Auth):
    """Adds the bearer token; its repr never shows it."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request

    def __repr__(self) -> str:
        return "<bearer token>"


def public_url(url: str) -> str:
    """The URL without user info, query or fragment: safe for reports and provenance."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# Seconds an idle connection is kept for reuse: below the servers' own keep-alive timeouts
# (uvicorn's 5 s, as httpx's default), so that a request is never sent on a connection the
# service is closing at that moment (a POST that meets it is lost: "Server disconnected without
# sending a response", and a submission is not retried).
KEEPALIVE_EXPIRY = 2.0


class Transport:
    """HTTP to one Orthovision AI IG service: connection limits, explicit timeouts, retries of
    429/502/503/504 with backoff and Retry-After, failures mapped onto `remote.errors`."""

    def __init__(
        self,
        options: RemoteOptions,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        verify: bool | ssl.SSLContext = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.options = options
        self.base = options.base_url.rstrip("/")
        self.public = public_url(self.base)
        pool = max(4, 2 * options.concurrency + 2)  # SSE holds one connection per image
        self.client = httpx.Client(
            timeout=httpx.Timeout(options.timeout, connect=min(options.timeout, 10.0)),
            limits=httpx.Limits(
                max_connections=pool, max_keepalive_connections=pool, keepalive_expiry=KEEPALIVE_EXPIRY
            ),
            headers={"Accept": ig.FHIR_JSON, **dict(headers or {})},
            auth=BearerAuth(token) if token else None,
            verify=verify,
            transport=transport,
            follow_redirects=False,  # a redirect could carry the token elsewhere
        )

    def close(self) -> None:
        self.client.close()

    def url(self, ref: str) -> str:
        if ref.startswith(("http://", "https://")):
            if not ref.startswith(self.base + "/"):
                raise RemoteBadResponse(f"reference outside the service: {public_url(ref)}")
            return ref
        return f"{self.base}/{ref.lstrip('/')}"

    # -- one request, with retries
    def request(
        self,
        method: str,
        ref: str,
        *,
        deadline: float,
        body: Request | None = None,
        accept: str | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """One request, retried while it may be: a failure that may succeed later, attempts
        left, and time left before `deadline` for the pause."""
        url = self.url(ref)
        path = urlsplit(url).path
        delays = self.options.retry.delays()
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RemoteDeadline(f"per-image deadline reached before {method} {path}")
            outcome = self._attempt(method, url, path, remaining, body, accept, idempotent)
            if isinstance(outcome, httpx.Response):
                return outcome
            err, retry, wait_for = outcome
            pause = wait_for if wait_for is not None else next(delays)
            if not retry or attempt >= self.options.max_attempts or (time.monotonic() + pause >= deadline):
                if attempt > 1:
                    err.message += f" (after {attempt} attempts)"
                raise err
            time.sleep(pause)

    def _attempt(
        self,
        method: str,
        url: str,
        path: str,
        remaining: float,
        body: Request | None,
        accept: str | None,
        idempotent: bool,
    ) -> httpx.Response | tuple[RemoteError, bool, float | None]:
        """One try: the response (< 300), or (the error, whether a retry may help, the pause
        the service asked for). Failures no retry can mend are raised."""
        headers = {}
        if body is not None:
            headers = {"Content-Type": ig.FHIR_JSON, "Content-Length": str(body.length)}
        if accept:
            headers["Accept"] = accept
        limit = min(self.options.timeout, remaining)
        try:
            req = self.client.build_request(
                method,
                url,
                content=body.parts() if body is not None else None,
                headers=headers,
                timeout=httpx.Timeout(limit),
            )
            resp = self.client.send(req, stream=True)
            # httpx's timeouts bound each read, not the body: a body sent a byte a second
            # would never end. The body must come whole within `limit`, and within the cap.
            resp = read_capped(resp, time.monotonic() + limit, f"{method} {path}")
        except httpx.TimeoutException as exc:
            err: RemoteError = RemoteTimeout(f"{method} {path}: no answer within {limit:.1f} s")
            return err, idempotent or isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout), None
        except httpx.ConnectError as exc:
            if _is_tls(exc):
                raise RemoteTLSError(f"TLS failure with {self.public}: {exc}") from exc
            # Nothing was sent: always worth another try.
            return RemoteConnectError(f"cannot connect to {self.public}: {exc}"), True, None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            err = RemoteDropped(f"{method} {path}: connection dropped ({exc or type(exc).__name__})")
            return err, idempotent, None
        except httpx.HTTPError as exc:
            raise RemoteConnectError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        log.debug("%s %s -> %s", method, path, resp.status_code)
        if resp.status_code < 300:
            return resp
        err = self._status_error(method, path, resp)
        wait_for = retry_after(resp.headers.get("retry-after"))
        resp.close()
        return err, resp.status_code in RETRY_STATUS, wait_for

    def _status_error(self, method: str, path: str, resp: httpx.Response) -> RemoteError:
        try:
            body = jsonlimits.loads(resp.content)
        except (jsonlimits.JsonLimitError, httpx.ResponseNotRead):
            body = None
        text, ig_code, issue_code = outcome_line(body)
        where = f"HTTP {resp.status_code} on {method} {path}"
        msg = f"{where}: {text}" if text else f"{where}: {resp.reason_phrase}"
        outcome = body if text else None
        if issue_code == "not-supported" and "tag" in text.lower():
            return RemoteUnsupportedTag(msg, outcome=outcome, status_code=resp.status_code)
        return RemoteHTTPError(msg, error_code=ig_code, outcome=outcome, status_code=resp.status_code)

    def json(self, resp: httpx.Response, what: str) -> dict[str, Any]:
        try:
            data = jsonlimits.loads(resp.content)
        except jsonlimits.JsonLimitError as exc:
            text = str(exc)
            if text.startswith("not JSON: "):
                raise RemoteBadResponse(f"{what}: the answer is not JSON ({text[10:]})") from None
            raise RemoteBadResponse(f"{what}: the answer is refused: {text}") from None
        if not isinstance(data, dict):
            raise RemoteBadResponse(f"{what}: the answer is not a FHIR resource")
        return data


def read_capped(resp: httpx.Response, until: float, what: str) -> httpx.Response:
    """The streamed response read whole, by `until` (monotonic) and within MAX_RESPONSE_BYTES;
    raises RemoteTimeout / RemoteBadResponse (the connection is closed either way)."""
    chunks: list[bytes] = []
    size = 0
    try:
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
            raise RemoteBadResponse(
                f"{what}: an answer of {int(declared):,} bytes (at most {MAX_RESPONSE_BYTES:,} are read)"
            )
        for chunk in resp.iter_bytes():
            size += len(chunk)
            if size > MAX_RESPONSE_BYTES:
                raise RemoteBadResponse(
                    f"{what}: an answer of more than {MAX_RESPONSE_BYTES:,} bytes (not read further)"
                )
            chunks.append(chunk)
            if time.monotonic() > until:
                raise RemoteTimeout(f"{what}: the answer came too slowly ({size:,} bytes by the time limit)")
    finally:
        resp.close()
    # Already decoded: the encoding headers no longer describe these bytes.
    headers = [
        (k, v)
        for k, v in resp.headers.multi_items()
        if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")
    ]
    return httpx.Response(
        resp.status_code,
        headers=headers,
        content=b"".join(chunks),
        request=resp.request,
        extensions=resp.extensions,
    )
