"""`orthovision serve` trusts nothing either (issue 24), over real HTTP on 127.0.0.1: a Host
that is a name nobody allowed is refused on every route (DNS rebinding: a web page that made
its own name resolve to the service), `--allow-host` names the ones clients use, a POST from a
foreign Origin is refused, and every answer carries nosniff, CORP and no-store."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("starlette")

from orthovision_cli.fhir import ig
from orthovision_cli.fhir.conformance import sample_image
from orthovision_cli.labels.model import Label, Labels
from orthovision_cli.server.app import create_app
from orthovision_cli.server.config import ServerConfig
from orthovision_cli.server.runner import serve_in_thread

IMAGE, CTYPE = sample_image()
FHIR = {"Content-Type": ig.FHIR_JSON}


class Gated:
    """Classifies only when the test opens the gate: its Task runs, its Binary is served."""

    name = "gated"
    version = "1"
    tags = ("modality",)

    def __init__(self) -> None:
        self.gate = threading.Event()

    def classify(self, image: Any) -> Labels:
        self.gate.wait(20)
        return Labels(modality=Label("modality", "XC", 0.9, self.name))


@pytest.fixture
def running() -> Iterator[tuple[str, str, Gated]]:
    """A service with one Task running: (base URL, the Task's Binary id, the classifier)."""
    clf = Gated()
    with serve_in_thread(create_app(clf, ServerConfig(workers=1))) as url:
        bundle = ig.submission_bundle(IMAGE, CTYPE, ["modality"])
        resp = httpx.post(f"{url}/Bundle", content=json.dumps(bundle), headers=FHIR, timeout=10)
        assert resp.status_code == 200, resp.text
        binary = next(
            e["response"]["location"].split("/")[1]
            for e in resp.json()["entry"]
            if e["response"]["location"].startswith("Binary/")
        )
        try:
            yield url, binary, clf
        finally:
            clf.gate.set()


ROUTES = ["/metadata", "/Task", "/Task?status=in-progress", "/Observation", "/Observation?code=x", "/_stats"]


def test_a_foreign_host_is_refused_on_every_route(running: tuple[str, str, Gated]) -> None:
    url, binary, _ = running
    port = url.rsplit(":", 1)[1]
    with httpx.Client(base_url=url, timeout=10) as client:
        for route in [*ROUTES, f"/Binary/{binary}"]:
            for host in ("evil.example", f"evil.example:{port}", "rebind.attacker.test.", "x"):
                resp = client.get(route, headers={"Host": host})
                assert resp.status_code == 403, (route, host, resp.text)
                outcome = resp.json()
                assert outcome["resourceType"] == "OperationOutcome"
                assert "allow-host" in outcome["issue"][0]["diagnostics"]
                assert binary not in resp.text
            # The names a client on this machine or the network types: served.
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", "[::1]:8080", "192.0.2.7"):
                assert client.get(route, headers={"Host": host}).status_code == 200, (route, host)
        # While its Task runs, the image itself only to this service's own names.
        resp = client.get(f"/Binary/{binary}")
        assert resp.status_code == 200 and resp.json()["resourceType"] == "Binary"


def test_allow_host_names_the_ones_clients_use() -> None:
    cfg = ServerConfig(allow_hosts=("ai.clinic.example", "AI2.clinic.example."))
    with serve_in_thread(create_app(_rules(), cfg)) as url, httpx.Client(base_url=url, timeout=10) as client:
        for host in ("ai.clinic.example", "ai.clinic.example:8080", "ai2.clinic.example"):
            assert client.get("/Task", headers={"Host": host}).status_code == 200, host
        assert client.get("/Task", headers={"Host": "evil.example"}).status_code == 403
    with serve_in_thread(create_app(_rules(), ServerConfig(allow_hosts=("*",)))) as url:
        assert httpx.get(f"{url}/Task", headers={"Host": "any.example"}, timeout=10).status_code == 200


def _rules() -> Any:
    from orthovision_cli.server.rules import ColourRuleClassifier

    return ColourRuleClassifier()


def test_a_post_from_a_foreign_origin_is_refused() -> None:
    bundle = json.dumps(ig.submission_bundle(IMAGE, CTYPE, ["modality"]))
    with serve_in_thread(create_app(_rules(), ServerConfig())) as url:
        origin_self = url  # http://127.0.0.1:PORT: the service's own origin
        for origin in ("http://evil.example", "null", "http://127.0.0.1:1", "file://"):
            resp = httpx.post(f"{url}/Bundle", content=bundle, headers={**FHIR, "Origin": origin}, timeout=10)
            assert resp.status_code == 403 and "Origin" in resp.text, origin
        assert httpx.get(f"{url}/_stats", timeout=10).json()["tasks"] == 0  # nothing stored
        resp = httpx.post(
            f"{url}/Bundle", content=bundle, headers={**FHIR, "Origin": origin_self}, timeout=10
        )
        assert resp.status_code == 200
        assert httpx.post(f"{url}/Bundle", content=bundle, headers=FHIR, timeout=10).status_code == 200


def test_every_answer_carries_the_headers() -> None:
    with serve_in_thread(create_app(_rules(), ServerConfig(token="tok-1234"))) as url:
        answers = [
            httpx.get(f"{url}/metadata", timeout=10),  # open without a token
            httpx.get(f"{url}/Task", timeout=10),  # 401
            httpx.get(f"{url}/Task", headers={"Authorization": "Bearer tok-1234"}, timeout=10),
            httpx.get(f"{url}/Task/nope", headers={"Authorization": "Bearer tok-1234"}, timeout=10),
            httpx.get(f"{url}/Task", headers={"Host": "evil.example"}, timeout=10),  # 403
            httpx.delete(f"{url}/metadata", timeout=10),  # 405
        ]
    assert [r.status_code for r in answers] == [200, 401, 200, 404, 403, 405]
    for r in answers:
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["cross-origin-resource-policy"] == "same-origin"
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["content-type"].startswith(("application/fhir+json", "application/json"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


ALLOW = ("--allow-host", "ai.clinic.example")


def test_serve_binds_loopback_and_takes_allow_host() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orthovision_cli", "serve", "--rules", "--port", str(port), *ALLOW],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        end = time.monotonic() + 60
        while True:
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/metadata", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < end, "serve did not start"
                time.sleep(0.2)
        assert resp.status_code == 200
        # Bound to the loopback address only (the default): not on this machine's other ones.
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True)
        if listening.returncode == 0:
            local = [line.split()[3] for line in listening.stdout.splitlines()]
            assert local == [f"127.0.0.1:{port}"], listening.stdout
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/Task", headers={"Host": "ai.clinic.example"}, timeout=5).status_code == 200
        assert httpx.get(f"{base}/Task", headers={"Host": "evil.example"}, timeout=5).status_code == 403
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "Traceback" not in err, err


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /Bundle HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n{}",
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nbad header line\r\n\r\n",
    ],
    ids=["content-length-abc", "garbage", "bad-header"],
)
def test_unparsable_requests_are_json_errors(request_bytes: bytes) -> None:
    with serve_in_thread(create_app(_rules(), ServerConfig())) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(request_bytes)
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/fhir+json" in head.lower(), answer
    assert json.loads(body)["resourceType"] == "OperationOutcome"
    assert b"nosniff" in head.lower()
