"""The reference service under a hostile network, over real HTTP on 127.0.0.1 (issue 16):
absurd JSON is a 400 with an OperationOutcome (never a 500), idle and slow clients are timed
out or evicted while a normal client is answered throughout, and a client that disconnects
mid-upload costs no traceback."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

pytest.importorskip("starlette")

from orthovision_cli import jsonlimits
from orthovision_cli.fhir import ig
from orthovision_cli.fhir.conformance import sample_image
from orthovision_cli.server.app import create_app
from orthovision_cli.server.config import ServerConfig
from orthovision_cli.server.rules import ColourRuleClassifier
from orthovision_cli.server.runner import serve_in_thread

IMAGE, CTYPE = sample_image()
HEADERS = {"Content-Type": ig.FHIR_JSON}


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    cfg = ServerConfig(
        max_upload_bytes=2_000_000,
        header_timeout=1.0,
        idle_timeout=1.0,
        body_timeout=3.0,
        keepalive_timeout=1.0,
        max_connections=32,
    )
    with serve_in_thread(create_app(ColourRuleClassifier(), cfg)) as base:
        yield base


def _deep_bundle(depth: int) -> bytes:
    """A valid submission whose resource carries an extension nested `depth` levels (written
    as text: json.dumps itself recurses too deeply for it)."""
    bundle = ig.submission_bundle(IMAGE, CTYPE, ["modality"])
    bundle["entry"][0]["resource"]["extension"] = ["DEEP"]
    deep = '{"url": "x", "extension": [' * depth + '{"url": "x", "valueString": "y"}' + "]}" * depth
    return json.dumps(bundle).replace('"DEEP"', deep).encode()


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,  # 100k-deep JSON
        None,  # a Bundle with a 500-deep extension (built below)
        b'{"resourceType": "Bundle", "total": ' + b"9" * 5000 + b"}",  # a 5000-digit number
        b'{"resourceType": "Bundle", "total": NaN}',
        b"\xff\xfe not even text",
    ],
    ids=["deep-array", "deep-extension", "long-number", "nan", "binary"],
)
def test_absurd_json_is_a_400_with_an_outcome(
    url: str, body: bytes | None, caplog: pytest.LogCaptureFixture
) -> None:
    data = _deep_bundle(500) if body is None else body
    with caplog.at_level(logging.ERROR):
        resp = httpx.post(f"{url}/Bundle", content=data, headers=HEADERS, timeout=30)
    assert resp.status_code == 400, resp.text
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert not [r for r in caplog.records if r.exc_info]  # no traceback logged


def test_json_limits_unit() -> None:
    assert jsonlimits.loads(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    with pytest.raises(jsonlimits.JsonLimitError, match="levels deep"):
        jsonlimits.loads("[" * 70 + "]" * 70)
    with pytest.raises(jsonlimits.JsonLimitError, match="characters"):
        jsonlimits.loads("1" * 100)


def _idle_sockets(url: str, n: int) -> list[socket.socket]:
    host, port = url.removeprefix("http://").split(":")
    out = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)), timeout=5)
        out.append(s)
    return out


def test_idle_and_slow_clients_do_not_starve_a_normal_one(url: str) -> None:
    idle = _idle_sockets(url, 64)  # twice the connection cap, silent
    slow = _idle_sockets(url, 4)
    for s in slow:
        s.sendall(b"GET /metadata HTTP/1.1\r\nHo")  # headers that never finish
    try:
        for _ in range(5):  # a normal client is answered throughout
            resp = httpx.get(f"{url}/metadata", timeout=10)
            assert resp.status_code == 200
        time.sleep(1.5)  # past the header deadline: the slow ones are closed
        for s in slow:
            s.settimeout(2)
            assert s.recv(100) == b""  # closed by the server
    finally:
        for s in idle + slow:
            s.close()


def test_a_stalled_body_is_a_408(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            b"POST /Bundle HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/fhir+json\r\n"
            b'Content-Length: 100000\r\n\r\n{"resourceType":'
        )
        s.settimeout(10)
        head = s.recv(200)
    assert head.startswith(b"HTTP/1.1 408"), head


def test_a_mid_upload_disconnect_is_quiet(url: str, caplog: pytest.LogCaptureFixture) -> None:
    host, port = url.removeprefix("http://").split(":")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(
                    b"POST /Bundle HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/fhir+json"
                    b'\r\nContent-Length: 100000\r\n\r\n{"resourceType":'
                )
        time.sleep(0.5)
        assert httpx.get(f"{url}/metadata", timeout=10).status_code == 200
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
