"""Every way a service can misbehave ends as one clear per-file result; the batch goes on.

A fault-injecting service (Starlette on 127.0.0.1, scripted per submission) plays the IG
workflow badly on purpose; a raw socket server drops connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette")

from misbehaving import capability, classifier, fhir, sample_picture, transaction_response
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orthovision_cli.errors import RemoteError
from orthovision_cli.fhir import ig
from orthovision_cli.inputs.source import SourceImage
from orthovision_cli.labels.model import Labels
from orthovision_cli.remote.classifier import RemoteClassifier
from orthovision_cli.server.runner import serve_in_thread


class FaultService:
    """Each POST takes the next fault from `script` ("ok" when empty); the Task it creates then
    behaves as that fault says when polled."""

    def __init__(self, *script: str) -> None:
        self.script = list(script)
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.tasks: dict[str, str] = {}
        self.posts = 0
        self.polls: dict[str, int] = {}

    def next_fault(self) -> str:
        with self.lock:
            self.posts += 1
            return self.script.pop(0) if self.script else "ok"

    async def metadata(self, request: Request) -> Response:
        return fhir(capability())

    async def submit(self, request: Request) -> Response:
        await request.body()
        fault = self.next_fault()
        if fault == "400":
            return fhir(ig.outcome("Task.focus must reference the Binary", error_code="invalid-bundle"), 400)
        if fault == "429":
            return fhir(
                ig.outcome("slow down", error_code="rate-limit-exceeded", issue_code="throttled"),
                429,
                {"Retry-After": "1"},
            )
        if fault in ("500", "503"):
            return fhir(ig.outcome("oops", error_code="service-unavailable"), int(fault))
        if fault == "slow":
            await asyncio.sleep(1.5)
        if fault == "badjson":
            return Response(b'{"resourceType": "Bundle", "entry": [', 200, media_type=ig.FHIR_JSON)
        if fault == "drop":
            return DropMidway()
        tid = f"t{next(self.ids)}"
        self.tasks[tid] = fault
        return fhir(transaction_response(tid))

    async def task(self, request: Request) -> Response:
        tid = request.path_params["id"]
        fault = self.tasks.get(tid)
        if fault is None:
            return fhir(ig.outcome("no such Task", issue_code="not-found"), 404)
        n = self.polls[tid] = self.polls.get(tid, 0) + 1
        task: dict[str, Any] = {
            "resourceType": "Task",
            "id": tid,
            "status": "in-progress",
            "intent": "order",
            "focus": {"reference": "Binary/b1"},
        }
        if fault == "task-failed":
            task["status"] = "failed"
            task["statusReason"] = {"concept": {"text": "corrupted-data: cannot decode image"}}
        elif fault == "poll-503" and n == 1:
            return fhir(ig.outcome("busy"), 503, {"Retry-After": "0"})
        elif fault in ("ok", "slow", "poll-503", "429-then-ok") and n >= 2:
            task["status"] = "completed"
            task["output"] = [
                {
                    "type": {"coding": [{"system": ig.CS_TASK_OUTPUT, "code": "observation"}]},
                    "valueReference": {"reference": f"Observation/{tid}-0"},
                }
            ]
        return fhir(task)

    async def observation(self, request: Request) -> Response:
        return fhir(
            ig.observation(
                request.path_params["id"],
                "Modality",
                codings=[{"code": "XC", "display": "External Photography"}],
                confidence=0.8,
            )
        )

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/metadata", self.metadata),
                Route("/Bundle", self.submit, methods=["POST"]),
                Route("/Task/{id}", self.task),
                Route("/Observation/{id}", self.observation),
            ]
        )


class DropMidway(Response):
    """Promises 1000 bytes, sends 10, then the connection breaks."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"1000"), (b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"resource', "more_body": True})
        raise ConnectionAbortedError("dropped on purpose")


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> SourceImage:
    return sample_picture(tmp_path_factory.mktemp("img"))


@pytest.fixture
def faults(request: pytest.FixtureRequest) -> Iterator[tuple[FaultService, str]]:
    svc = FaultService(*request.param)
    with serve_in_thread(svc.app()) as url:
        yield svc, url


def outcome(rc: RemoteClassifier, img: SourceImage) -> Labels | RemoteError:
    try:
        return rc.classify(img)
    except RemoteError as exc:
        return exc


@pytest.mark.parametrize(
    ("faults", "reason", "text", "posts"),
    [
        (["400"], "remote-http-400", "invalid-bundle: Task.focus must reference the Binary", 1),
        (["500"], "remote-http-500", "HTTP 500 on POST /Bundle: service-unavailable: oops", 1),
        (["503", "503", "503"], "remote-http-503", "HTTP 503", 3),
        (["429", "429", "429"], "remote-http-429", "slow down (after 3 attempts)", 3),
        (["slow"], "remote-timeout", "POST /Bundle: no answer within 0.5 s", 1),
        (["badjson"], "remote-bad-response", "POST Bundle: the answer is not JSON", 1),
        (["drop"], "remote-dropped", "connection dropped", 1),
        (["task-failed"], "remote-task-failed", "Task t1 failed: corrupted-data: cannot decode", 1),
        (["never"], "remote-deadline", "Task t1 still in-progress after 3 s", 1),
    ],
    indirect=["faults"],
)
def test_each_fault_is_one_clear_result(
    faults: tuple[FaultService, str], picture: SourceImage, reason: str, text: str, posts: int
) -> None:
    svc, url = faults
    with classifier(url) as rc:
        t0 = time.monotonic()
        res = outcome(rc, picture)
        took = time.monotonic() - t0
    assert isinstance(res, RemoteError), res
    assert res.reason == reason, res.one_line()
    assert text in res.one_line()
    assert res.path == picture.path
    assert svc.posts == posts  # 4xx/500 and non-idempotent failures are not retried
    assert took < 4.5
    if reason in ("remote-task-failed",):
        assert res.task_id == "t1"


@pytest.mark.parametrize("faults", [["429", "503", "poll-503"]], indirect=True)
def test_retries_honour_retry_after_then_succeed(
    faults: tuple[FaultService, str], picture: SourceImage
) -> None:
    svc, url = faults
    with classifier(url, timeout=5.0, deadline=10.0, max_attempts=4) as rc:
        t0 = time.monotonic()
        labels = rc.classify(picture)
    assert isinstance(labels, Labels)
    assert labels.value("modality") == "XC"
    assert labels.modality is not None and labels.modality.confidence == pytest.approx(0.8)
    assert time.monotonic() - t0 >= 1.0  # waited as Retry-After said
    assert svc.posts == 3


@pytest.mark.parametrize(
    "faults",
    [["400", "500", "badjson", "task-failed", "never", "drop", "ok", "ok"]],
    indirect=True,
)
def test_batch_goes_on(faults: tuple[FaultService, str], picture: SourceImage) -> None:
    _, url = faults
    images = [SourceImage(path=picture.path, rel=f"{i}.jpg") for i in range(8)]
    with classifier(url, deadline=2.0) as rc:
        results = list(rc.classify_many(images, concurrency=4))
    assert len(results) == 8
    reasons = sorted(r.reason if isinstance(r, RemoteError) else "ok" for _, r in results)
    assert reasons == sorted(
        [
            "remote-http-400",
            "remote-http-500",
            "remote-bad-response",
            "remote-task-failed",
            "remote-deadline",
            "remote-dropped",
            "ok",
            "ok",
        ]
    )


@contextlib.contextmanager
def socket_server(handle: Callable[[socket.socket, threading.Event], None]) -> Iterator[str]:
    """A raw server on 127.0.0.1: each connection accepted is given to `handle` (with the event
    that says the server stops) in a thread of its own; its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=handle, args=(conn, stop), daemon=True).start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        sock.close()


@pytest.fixture
def dropping_server() -> Iterator[str]:
    """Accepts connections, reads a little, closes without answering."""

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        with conn:
            conn.settimeout(1)
            with contextlib.suppress(OSError):
                conn.recv(1024)

    with socket_server(handle) as url:
        yield url


def test_dropped_connection_is_retried_then_reported(dropping_server: str, picture: SourceImage) -> None:
    with classifier(dropping_server) as rc:
        res = outcome(rc, picture)
    assert isinstance(res, RemoteError)
    assert res.reason == "remote-dropped"
    assert "GET /metadata" in res.one_line()


def test_refused_connection(picture: SourceImage) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with classifier(f"http://127.0.0.1:{port}", deadline=1.0) as rc:
        res = outcome(rc, picture)
    assert isinstance(res, RemoteError)
    assert res.reason == "remote-connect"
    assert f"127.0.0.1:{port}" in res.one_line()


def test_path_is_kept_out_of_messages_but_on_the_error(picture: SourceImage) -> None:
    err = RemoteError("x", path=picture.path)
    assert err.path == Path(picture.path)


@pytest.fixture
def keep_alive_server() -> Iterator[tuple[str, list[int]]]:
    """Answers every request with HTTP/1.1 keep-alive and never closes an idle connection; counts
    the connections it accepted (the list's one element)."""
    accepted = [0]

    def handle(conn: socket.socket, stop: threading.Event) -> None:
        accepted[0] += 1
        with conn:
            conn.settimeout(0.2)
            data = b""
            while not stop.is_set():
                try:
                    got = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not got:
                    return
                data += got
                while b"\r\n\r\n" in data:  # GET requests: no body
                    _, data = data.split(b"\r\n\r\n", 1)
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"
                        b"Content-Length: 2\r\n\r\n{}"
                    )

    with socket_server(handle) as url:
        yield url, accepted


def test_an_idle_connection_is_not_reused_past_its_expiry(
    keep_alive_server: tuple[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection is reused while fresh; one idle longer than KEEPALIVE_EXPIRY is not (a server
    closing it at that moment would lose a submission sent on it). The expiry is below the
    common servers' keep-alive timeouts (uvicorn's 5 s)."""
    from orthovision_cli.remote import transport

    assert transport.KEEPALIVE_EXPIRY < 5.0
    monkeypatch.setattr(transport, "KEEPALIVE_EXPIRY", 0.3)  # the same rule, a quicker test
    url, accepted = keep_alive_server
    t = transport.Transport(transport.RemoteOptions(base_url=url, timeout=2.0))
    try:
        for _ in range(3):
            t.request("GET", "metadata", deadline=time.monotonic() + 5).close()
            time.sleep(0.05)
        assert accepted[0] == 1  # fresh: one connection for all three
        time.sleep(0.6)
        t.request("GET", "metadata", deadline=time.monotonic() + 5).close()
        assert accepted[0] == 2  # idle past its expiry: a new one
    finally:
        t.close()
