"""The review server's HTTP guards: who may ask, how long a request may take, what every answer
carries. The threat model is in docs/review.md ("Security").

* Host must name this server (127.0.0.1 or localhost and its port): a web page that rebinds its
  own name to 127.0.0.1 (DNS rebinding) is refused.
* Every route needs the page's random token (compared in constant time): the address printed
  carries it once (`/?token=...`), the page served there sets it as an HttpOnly,
  SameSite=Strict cookie named after the port (two servers on one machine keep theirs) and its
  script takes it out of the address bar. A script may send it as a header instead. The browser
  is opened on a private file that leads there (`launch_file`), so the token never shows in a
  process list.
* A state-changing request with a foreign `Origin` (or `Sec-Fetch-Site` cross-site) is refused.
* Answers are not for other sites (Cross-Origin-Resource-Policy: same-origin, nosniff, a CSP
  without framing, no referrer); API answers are not stored.
* Requests are bounded: a socket timeout between bytes, a deadline for a whole body, a body
  size, a JSON depth; a bad request is a JSON error, never a traceback in the terminal.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import html
import json
import os
import sys
import tempfile
import threading
import time
import webbrowser
from collections.abc import Callable
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .. import jsonlimits

TIMEOUT = 10.0  # seconds a client may stay silent (request line, headers, between body bytes)
BODY_DEADLINE = 30.0  # seconds for a whole request body (a byte every 9 s is not a client)
BACKLOG = 128  # connections waiting to be accepted (the browser opens 6 at once, tests more)
TOKEN_HEADER = "X-Orthovision-Token"
MAX_DEPTH = 16  # a decisions POST nests 3 levels

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class Refused(Exception):
    """A request answered with an error (JSON), the connection then closed."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def cookie_name(port: int) -> str:
    return f"orthovision-review-{port}"


def same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode())


def host_ok(headers: Message, port: int) -> bool:
    host = (headers.get("Host") or "").lower()
    return host in (f"127.0.0.1:{port}", f"localhost:{port}")


def origin_ok(headers: Message, port: int) -> bool:
    """No foreign origin: `Origin` absent (not a browser) or this server; `Sec-Fetch-Site`
    absent, same-origin or none (typed in, opened by the tool)."""
    origin = headers.get("Origin")
    if origin is not None and origin.lower() not in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        return False
    return (headers.get("Sec-Fetch-Site") or "none").lower() in ("same-origin", "none")


def cookie_token(headers: Message, port: int) -> str:
    name = cookie_name(port)
    for line in headers.get_all("Cookie") or []:
        for part in line.split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
    return ""


def given_token(headers: Message, port: int) -> str:
    return headers.get(TOKEN_HEADER) or cookie_token(headers, port)


def query_token(query: str) -> str:
    return (parse_qs(query).get("token") or [""])[0]


def set_cookie(port: int, token: str) -> str:
    return f"{cookie_name(port)}={token}; Path=/; HttpOnly; SameSite=Strict"


def content_length(headers: Message, max_body: int) -> int:
    """The declared body length; Refused when absent, not a number or too large."""
    if headers.get("Transfer-Encoding"):
        raise Refused(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not a chunked body")
    raw = (headers.get("Content-Length") or "").strip()
    if not raw.isdigit() or not raw.isascii():
        raise Refused(HTTPStatus.BAD_REQUEST, "Content-Length is missing or not a number")
    length = int(raw) if len(raw) <= 15 else max_body + 1
    if length > max_body:
        raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"larger than {max_body} bytes")
    return length


def read_body(rfile: Any, connection: Any, length: int) -> bytes:
    """`length` bytes within BODY_DEADLINE, each read within TIMEOUT; Refused (408) otherwise.
    A client gone mid-body raises ConnectionError (nobody to answer)."""
    deadline = time.monotonic() + BODY_DEADLINE
    chunks: list[bytes] = []
    left = length
    while left:
        wait = deadline - time.monotonic()
        if wait <= 0:
            raise Refused(HTTPStatus.REQUEST_TIMEOUT, "the request body came too slowly")
        connection.settimeout(min(TIMEOUT, wait))
        try:
            chunk = rfile.read1(min(left, 1 << 16))
        except TimeoutError:
            raise Refused(HTTPStatus.REQUEST_TIMEOUT, "the request body came too slowly") from None
        if not chunk:
            raise ConnectionResetError("the client closed the connection mid-body")
        chunks.append(chunk)
        left -= len(chunk)
    connection.settimeout(TIMEOUT)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    try:
        return jsonlimits.loads(body or b"null", max_depth=MAX_DEPTH)
    except jsonlimits.JsonLimitError as exc:
        raise Refused(HTTPStatus.BAD_REQUEST, f"not JSON the page sends: {exc}") from None


def note(text: str) -> None:
    """One line on the terminal for what no client can be told (never a traceback)."""
    print(f"orthovision review: {' '.join(text.split())[:300]}", file=sys.stderr, flush=True)


class ReviewHTTPServer(ThreadingHTTPServer):
    """The standard library's threading server with a real backlog and no tracebacks."""

    request_queue_size = BACKLOG
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return  # a client gone or silent: nothing to tell anybody
        note(f"error answering a request: {type(exc).__name__}: {exc}")


def open_browser(url: str) -> bool:
    """Open the page where a graphical browser is available: not over SSH without a display,
    and never a console browser (it would take over the terminal the address is printed on)."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    if getattr(browser, "name", "") in ("www-browser", "links", "elinks", "lynx", "w3m"):
        return False
    threading.Thread(target=browser.open, args=(url,), daemon=True).start()
    return True


def launch_file(url: str) -> Path:
    """A file only this user can read that sends the browser to `url`: the browser is started
    with this file's name, not with the token (a command line is visible to every user)."""
    fd, name = tempfile.mkstemp(prefix="orthovision-review-", suffix=".html")  # mode 0600
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        link = html.escape(url, quote=True)
        f.write(
            f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url={link}">'
            f'<title>orthovision review</title><a href="{link}">orthovision review</a>\n'
        )
    return Path(name)


def guarded(route: Callable[[Any], None]) -> Callable[[Any], None]:
    """A route of a GuardedHandler: Host, token (or the page's address with it: cookie set,
    redirect), Origin for a POST; errors as JSON, a client gone or silent costs nothing."""

    @functools.wraps(route)
    def run(self: Any) -> None:
        self.new_cookie = False
        try:
            if self.command == "GET" and (self.headers.get("Content-Length") or "0").strip() != "0":
                self.close_connection = True  # a body nobody reads is not the next request
            self.check(state_changing=self.command != "GET")
            route(self)
        except Refused as exc:
            self.close_connection = True  # an unread body must not be taken for a request
            self.send_json(exc.status, {"error": exc.message})
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # a bug: one line on the terminal, a JSON answer
            where = urlsplit(self.path).path
            note(f"error answering {self.command} {where}: {type(exc).__name__}: {exc}")
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": "internal error"})

    return run


class GuardedHandler(BaseHTTPRequestHandler):
    """The review page's request handler without its routes (`server.make_handler` adds
    them, each decorated with `guarded`); `token` is the page's."""

    server_version = "orthovision-review"
    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT  # the socket's: a silent client is dropped
    token = ""
    new_cookie = False  # this answer sets the token's cookie (the page opened by its address)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no log per request
        return

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])  # type: ignore[index]

    def check(self, state_changing: bool) -> None:
        if not host_ok(self.headers, self.port):
            raise Refused(HTTPStatus.FORBIDDEN, "wrong host")
        if state_changing and not origin_ok(self.headers, self.port):
            raise Refused(HTTPStatus.FORBIDDEN, "a request from another site")
        if same(given_token(self.headers, self.port), self.token):
            return
        url = urlsplit(self.path)
        if self.command == "GET" and url.path == "/" and same(query_token(url.query), self.token):
            # The address the tool printed: the page itself, which keeps the token in a cookie
            # (no redirect: a SameSite=Strict cookie is not sent on a redirect that a file or
            # another site started, so the page would be refused).
            self.new_cookie = True
            return
        raise Refused(
            HTTPStatus.FORBIDDEN, "missing or wrong token: open the address `orthovision review` printed"
        )

    def common_headers(self, length: int | None, cache: str) -> None:
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", cache)
        if self.new_cookie:
            self.send_header("Set-Cookie", set_cookie(self.port, self.token))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")

    def send_body(
        self, status: int, body: bytes, ctype: str, cache: str = "no-store", etag: str = ""
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if etag:
            self.send_header("ETag", etag)
        # A 304 has no body and no length of its own.
        self.common_headers(len(body) if status != HTTPStatus.NOT_MODIFIED else None, cache)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def send_json(self, status: int, data: Any) -> None:
        self.send_body(status, json.dumps(data).encode(), "application/json")

    def payload(self, max_body: int) -> Any:
        """The request's JSON body, bounded in size, time and depth; raises Refused."""
        length = content_length(self.headers, max_body)
        return parse_json(read_body(self.rfile, self.connection, length))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's own errors (a bad request line, headers too long) as JSON,
        not its HTML page."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        with contextlib.suppress(OSError):
            self.send_json(code, {"error": message or phrase})

    def _not_allowed(self) -> None:
        self.close_connection = True
        body = json.dumps({"error": f"{self.command} is not supported"}).encode()
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, POST")
        self.send_header("Content-Type", "application/json")
        self.common_headers(len(body), "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_TRACE = do_CONNECT = _not_allowed

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError):  # a client gone while its headers came
            self.close_connection = True
