"""`orthovision conformance` against `orthovision serve` and deliberately broken variants."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("starlette")

from typer.testing import CliRunner

from orthovision_cli.cli import app as cli
from orthovision_cli.fhir import ig
from orthovision_cli.fhir.conformance import UNSUPPORTED_TAG, run_conformance
from orthovision_cli.server.app import create_app
from orthovision_cli.server.config import ServerConfig
from orthovision_cli.server.rules import ColourRuleClassifier
from orthovision_cli.server.runner import serve_in_thread

Mutate = Callable[[str, str, int, Any, bytes], tuple[int, Any]]


class Rewrite:
    """ASGI wrapper that rewrites JSON responses: a service with one deliberate defect."""

    def __init__(self, app: Any, mutate: Mutate) -> None:
        self.app = app
        self.mutate = mutate

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_body = bytearray()

        async def recv() -> Any:
            msg = await receive()
            if msg["type"] == "http.request":
                request_body.extend(msg.get("body", b""))
            return msg

        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(msg: Any) -> None:
            if msg["type"] == "http.response.start":
                start.update(msg)
                return
            chunks.append(msg.get("body", b""))
            if msg.get("more_body"):
                return
            body = b"".join(chunks)
            try:
                data = json.loads(body)
            except ValueError:
                data = None
            status, new = self.mutate(
                scope["method"], scope["path"], start["status"], data, bytes(request_body)
            )
            out = new if isinstance(new, bytes) else json.dumps(new).encode()
            headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
            headers.append((b"content-length", str(len(out)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": out})

        await self.app(scope, recv, capture)


def run_against(mutate: Mutate | None = None, **cfg: Any) -> Any:
    app: Any = create_app(ColourRuleClassifier(), ServerConfig(**cfg))
    if mutate is not None:
        app = Rewrite(app, mutate)
    with serve_in_thread(app) as url:
        return run_conformance(url, deadline=10, timeout=10, token=cfg.get("token"))


def failed(report: Any) -> dict[str, str]:
    return {c.name: c.evidence for c in report.checks if c.ok is False}


def test_reference_service_passes() -> None:
    report = run_against()
    assert report.passed, failed(report)
    names = [c.name for c in report.checks]
    for expected in (
        "discovery: supported-dicom-tags",
        "submit[modality]",
        "complete[all tags]",
        "input/output count[all tags]",
        "performer device[modality]",
        "task search by status",
        "error: unsupported tag",
        "error: Task.focus not the Binary",
        "error: body not JSON",
    ):
        assert expected in names
    assert sum(n.startswith("observation[all tags]") for n in names) == 3


def test_reference_service_with_token_passes() -> None:
    assert run_against(token="tkn-123").passed


def drop_an_output(method: str, path: str, status: int, data: Any, req: bytes) -> tuple[int, Any]:
    if method == "GET" and path.startswith("/Task/") and isinstance(data, dict) and data.get("output"):
        data["output"] = data["output"][:-1] if len(data["output"]) > 1 else []
    return status, data


def no_tags_extension(method: str, path: str, status: int, data: Any, req: bytes) -> tuple[int, Any]:
    if path == "/metadata":
        data.pop("extension", None)
    return status, data


def accepts_unknown_tags(method: str, path: str, status: int, data: Any, req: bytes) -> tuple[int, Any]:
    if method == "POST" and UNSUPPORTED_TAG.encode() in req:
        return 200, {"resourceType": "Bundle", "type": "transaction-response", "entry": []}
    return status, data


def plain_text_errors(method: str, path: str, status: int, data: Any, req: bytes) -> tuple[int, Any]:
    if status >= 400:
        return status, b"bad request"
    return status, data


def preliminary_observations(method: str, path: str, status: int, data: Any, req: bytes) -> tuple[int, Any]:
    if path.startswith("/Observation/"):
        data["status"] = "preliminary"
        data["extension"][0]["valueDecimal"] = 7
    return status, data


def requested_forever(method: str, path: str, status: int, data: Any, req: bytes) -> tuple[int, Any]:
    if path.startswith("/Task/"):
        data["status"] = "in-progress"
    return status, data


@pytest.mark.parametrize(
    ("mutate", "check", "evidence"),
    [
        (
            drop_an_output,
            "input/output count[all tags]",
            "3 tag(s) asked, 3 tagDICOM input(s), 2 output(s)",
        ),
        (no_tags_extension, "discovery: supported-dicom-tags", "no supported-dicom-tags extension"),
        (accepts_unknown_tags, "error: unsupported tag", "accepted with HTTP 200"),
        (plain_text_errors, "error: body not JSON", "body is not JSON"),
        (preliminary_observations, "observation[modality] Observation/", "status=preliminary"),
    ],
)
def test_broken_variants_fail_with_a_reason(mutate: Mutate, check: str, evidence: str) -> None:
    report = run_against(mutate)
    assert not report.passed
    bad = failed(report)
    hits = [name for name in bad if name.startswith(check)]
    assert hits, bad
    assert evidence in bad[hits[0]]


def test_task_that_never_completes_fails_by_deadline() -> None:
    app = Rewrite(create_app(ColourRuleClassifier(), ServerConfig()), requested_forever)
    with serve_in_thread(app) as url:
        report = run_conformance(url, deadline=0.5, timeout=5)
    bad = failed(report)
    assert "still in-progress after" in bad["complete[modality]"]


def test_cli_prints_table_and_exit_codes() -> None:
    runner = CliRunner()
    with serve_in_thread(create_app(ColourRuleClassifier())) as url:
        ok = runner.invoke(cli, ["conformance", url, "--deadline", "10"])
        assert ok.exit_code == 0, ok.output
        assert "PASS" in ok.output and "FAIL" not in ok.output
        as_json = runner.invoke(cli, ["conformance", url, "--json", "--post-to-base"])
        assert as_json.exit_code == 0
        assert json.loads(as_json.output)["passed"] is True
    with serve_in_thread(Rewrite(create_app(ColourRuleClassifier()), no_tags_extension)) as url:
        bad = runner.invoke(cli, ["conformance", url])
        assert bad.exit_code == 1
        assert "FAIL" in bad.output


def test_unreachable_service_fails_cleanly() -> None:
    report = run_conformance("http://127.0.0.1:9", timeout=2)
    assert not report.passed
    assert report.checks[0].name == "discovery: GET /metadata"
    assert ig.FHIR_JSON  # the kit needs no server extra to run
