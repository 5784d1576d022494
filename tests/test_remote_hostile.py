"""The remote client against a service that misbehaves on purpose (issue 16), over real HTTP on
127.0.0.1: whatever the service does (only SSE keep-alives, an endless event line, an answer a
byte at a time, a 300 MB Task, a 200,000-deep JSON answer), each image fails with one clear
remote reason within its deadline, and the client's memory stays bounded."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psutil
import pytest

pytest.importorskip("starlette")

from misbehaving import capability, classifier, fhir, sample_picture, transaction_response
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from orthovision_cli.errors import RemoteError
from orthovision_cli.fhir import ig
from orthovision_cli.inputs.source import SourceImage
from orthovision_cli.remote.poll import Backoff
from orthovision_cli.server.runner import serve_in_thread

DEADLINE = 3.0


async def _forever(piece: bytes, pause: float) -> AsyncIterator[bytes]:
    while True:
        yield piece
        await asyncio.sleep(pause)


def hostile_app(mode: str) -> Starlette:
    async def metadata(request: Request) -> Response:
        task: dict[str, Any] = {"type": "Task"}
        if mode.startswith("sse"):
            task["extension"] = [{"url": ig.EXT_TASK_EVENTS, "valueBoolean": True}]
        return fhir(capability(rest=[{"mode": "server", "resource": [task]}]))

    async def submit(request: Request) -> Response:
        await request.body()
        return fhir(transaction_response("t1"))

    async def task(request: Request) -> Response:
        if "text/event-stream" in request.headers.get("accept", ""):
            if mode == "sse-keepalive":
                return StreamingResponse(_forever(b": keep-alive\n\n", 0.1), media_type="text/event-stream")
            if mode == "sse-endless-line":
                return StreamingResponse(
                    _forever(b"data: " + b"a" * 65536, 0.0), media_type="text/event-stream"
                )
        body = json.dumps(
            {"resourceType": "Task", "id": "t1", "status": "in-progress", "intent": "order"}
        ).encode()
        if mode == "slow-body":

            async def trickle() -> AsyncIterator[bytes]:
                for i in range(len(body)):
                    yield body[i : i + 1]
                    await asyncio.sleep(0.3)

            return StreamingResponse(trickle(), media_type=ig.FHIR_JSON)
        if mode == "huge-body":

            async def huge() -> AsyncIterator[bytes]:
                yield b'{"resourceType": "Task", "id": "t1", "note": "'
                for _ in range(300):  # 300 MB
                    yield b"a" * (1 << 20)
                yield b'"}'

            return StreamingResponse(huge(), media_type=ig.FHIR_JSON)
        if mode == "deep-json":
            return Response(b"[" * 200_000 + b"]" * 200_000, media_type=ig.FHIR_JSON)
        return fhir(json.loads(body))

    return Starlette(
        routes=[
            Route("/metadata", metadata),
            Route("/Bundle", submit, methods=["POST"]),
            Route("/Task/{id}", task),
        ]
    )


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> SourceImage:
    return sample_picture(tmp_path_factory.mktemp("img"))


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[str]:
    with serve_in_thread(hostile_app(request.param)) as url:
        yield url


@pytest.mark.parametrize(
    ("served", "reason"),
    [
        ("sse-keepalive", "remote-deadline"),
        ("sse-endless-line", "remote-bad-response"),
        ("slow-body", "remote-"),  # a timeout or the deadline: either says the service stalled
        ("huge-body", "remote-bad-response"),
        ("deep-json", "remote-bad-response"),
    ],
    indirect=["served"],
)
def test_a_misbehaving_service_costs_one_reason_within_the_deadline(
    served: str, reason: str, picture: SourceImage
) -> None:
    clf = classifier(
        served, timeout=2.0, deadline=DEADLINE, max_attempts=2, poll=Backoff(first=0.05, cap=0.2)
    )
    me = psutil.Process()
    before = me.memory_info().rss
    start = time.monotonic()
    with pytest.raises(RemoteError) as info:
        clf.classify(picture)
    took = time.monotonic() - start
    assert info.value.reason.startswith(reason), info.value.one_line()
    assert "\n" not in info.value.one_line()
    assert took < DEADLINE + 2.5, f"{took:.1f} s"
    assert me.memory_info().rss - before < 100 << 20  # far from the 300 MB answer
