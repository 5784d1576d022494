"""A service that misbehaves on purpose: the pieces `test_remote_faults.py` (faults scripted per
submission) and `test_remote_hostile.py` (hostile answers) share. Their services are Starlette
apps on 127.0.0.1; this module gives them their FHIR answers, and the tests their picture and a
client with short timeouts and backoffs, so that each fault ends within seconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.responses import Response

from orthovision_cli.fhir import ig
from orthovision_cli.fhir.conformance import sample_image
from orthovision_cli.inputs.source import SourceImage
from orthovision_cli.remote.classifier import RemoteClassifier
from orthovision_cli.remote.poll import Backoff
from orthovision_cli.remote.service import RemoteService
from orthovision_cli.remote.transport import RemoteOptions


def fhir(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), status, headers=headers, media_type=ig.FHIR_JSON)


def capability(rest: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A CapabilityStatement that supports the Modality tag (in the FSH's complex shape only)."""
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "kind": "instance",
        "fhirVersion": "5.0.0",
        "date": "2025-01-01",
        "format": ["json"],
        "extension": [
            {
                "url": ig.EXT_SUPPORTED_TAGS,
                "extension": [{"url": "tagIdentifier", "valueString": "Modality"}],
            }
        ],
    }
    if rest is not None:
        statement["rest"] = rest
    return statement


def transaction_response(task_id: str) -> dict[str, Any]:
    """The answer to a submission: locations only, no resources (the client must read the Task
    id from `response.location`)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {"response": {"status": "201 Created", "location": "Binary/b1/_history/1"}},
            {"response": {"status": "201 Created", "location": f"Task/{task_id}/_history/1"}},
        ],
    }


def sample_picture(folder: Path) -> SourceImage:
    """The IG's sample photograph, written to `folder`."""
    path = folder / "photo.jpg"
    path.write_bytes(sample_image()[0])
    return SourceImage(path=path, rel="photo.jpg")


def classifier(url: str, **kw: Any) -> RemoteClassifier:
    """A client of the service at `url`: short timeouts, few attempts, quick backoffs (`kw`
    overrides any of them)."""
    opts = {
        "timeout": 0.5,
        "deadline": 3.0,
        "max_attempts": 3,
        "poll": Backoff(first=0.02, cap=0.1),
        "retry": Backoff(first=0.05, cap=0.2),
        **kw,
    }
    return RemoteClassifier(RemoteService(RemoteOptions(base_url=url, **opts)))
