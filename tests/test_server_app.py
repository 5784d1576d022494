"""The reference IG service over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytest.importorskip("starlette")

from orthovision_cli.errors import CorruptImage
from orthovision_cli.fhir import ig
from orthovision_cli.fhir.capability import parse_capability
from orthovision_cli.fhir.conformance import sample_image
from orthovision_cli.fhir.validate import fhir_parse
from orthovision_cli.labels.model import Label, Labels
from orthovision_cli.server.app import create_app
from orthovision_cli.server.config import ServerConfig
from orthovision_cli.server.rules import ColourRuleClassifier
from orthovision_cli.server.runner import serve_in_thread

IMAGE, CTYPE = sample_image()


class Gated:
    """Classifies only when the test opens the gate (to observe queueing and progress)."""

    name = "gated"
    version = "1"
    tags = ("modality", "protocol")

    def __init__(self) -> None:
        self.gate = threading.Event()

    def classify(self, image: Any) -> Labels:
        assert image.read_bytes()[:2] == b"\xff\xd8"
        self.gate.wait(10)
        return Labels(modality=Label("modality", "XC", 0.9, self.name))


class Broken:
    name = "broken"
    tags = ("modality",)

    def classify(self, image: Any) -> Labels:
        raise CorruptImage("cannot decode preview: broken data")


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    with serve_in_thread(create_app(ColourRuleClassifier(), ServerConfig(max_upload_bytes=2_000_000))) as url:
        yield url


@pytest.fixture
def client(service: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service, timeout=10) as c:
        yield c


def post(client: httpx.Client, bundle: Any, path: str = "/Bundle") -> httpx.Response:
    return client.post(path, content=json.dumps(bundle), headers={"Content-Type": ig.FHIR_JSON})


def wait_final(client: httpx.Client, tid: str, timeout: float = 10) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        task = client.get(f"/Task/{tid}").json()
        if task["status"] in ig.FINAL_STATES or time.monotonic() > end:
            return task
        time.sleep(0.02)


def submit(client: httpx.Client, tags: list[str], **kw: Any) -> tuple[httpx.Response, str]:
    resp = post(client, ig.submission_bundle(IMAGE, CTYPE, tags, **kw))
    assert resp.status_code == 200, resp.text
    return resp, resp.json()["entry"][-1]["resource"]["id"]


def test_metadata_declares_tags_in_both_shapes(client: httpx.Client) -> None:
    resp = client.get("/metadata")
    assert resp.headers["content-type"].startswith(ig.FHIR_JSON)
    body = resp.json()
    fhir_parse(body)
    shapes = [e for e in body["extension"] if e["url"] == ig.EXT_SUPPORTED_TAGS]
    assert {e.get("valueString") for e in shapes} >= {"modality", "protocol", "orientation"}
    assert any("extension" in e for e in shapes)
    cap = parse_capability(body)
    assert cap.seam_tags == ["modality", "protocol", "orientation"]
    assert cap.sse and cap.fhir_version == "5.0.0"


def test_submission_runs_to_completed_observations(client: httpx.Client) -> None:
    resp, tid = submit(client, ["modality", "Modality", "0018,1030"], modality="XC")
    body = resp.json()
    fhir_parse(body)
    assert body["type"] == "transaction-response"
    assert [e["response"]["location"].split("/")[0] for e in body["entry"]] == [
        "Binary",
        "ImagingStudy",
        "Task",
    ]
    assert body["entry"][-1]["resource"]["status"] == "in-progress"
    task = wait_final(client, tid)
    fhir_parse(task)
    assert task["status"] == "completed"
    assert len(task["output"]) == 3
    device = next(e for e in task["extension"] if e["url"] == ig.EXT_PERFORMER_DEVICE)
    dev = client.get("/" + device["valueReference"]["reference"]).json()
    fhir_parse(dev)
    assert dev["displayName"] == "colour-rules"
    values = []
    for out in task["output"]:
        obs = client.get("/" + out["valueReference"]["reference"]).json()
        fhir_parse(obs)
        assert obs["status"] == "final"
        assert obs["category"][0]["coding"][0]["code"] == "imaging"
        assert obs["code"]["coding"][0]["system"] == ig.CS_DICOM_TAGS
        conf = obs["extension"][0]["valueDecimal"]
        assert 0 <= conf <= 1
        values.append(
            obs.get("valueCodeableConcept", {}).get("coding", [{}])[0].get("code") or obs.get("valueString")
        )
    assert values[:2] == ["XC", "XC"]
    assert values[2] in ("intraoral", "extraoral")
    # pixels and context are dropped once the Task ends
    assert client.get("/" + task["focus"]["reference"]).status_code == 410
    study = next(i for i in task["input"] if "valueReference" in i)["valueReference"]["reference"]
    gone = client.get("/" + study)
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"


def test_post_to_base_and_searches(client: httpx.Client) -> None:
    resp = post(client, ig.submission_bundle(IMAGE, CTYPE, ["orientation"]), path="/")
    assert resp.status_code == 200
    tid = resp.json()["entry"][-1]["resource"]["id"]
    assert wait_final(client, tid)["status"] == "completed"
    found = client.get("/Task", params={"status": "completed"}).json()
    fhir_parse(found)
    assert tid in {e["resource"]["id"] for e in found["entry"]}
    assert all(e["resource"]["status"] == "completed" for e in found["entry"])
    assert client.get("/Task", params={"status": "failed"}).json()["total"] == 0
    obs = client.get("/Observation", params={"code": f"{ig.CS_DICOM_TAGS}|orientation"}).json()
    fhir_parse(obs)
    assert obs["total"] >= 1
    assert {e["resource"]["code"]["coding"][0]["code"] for e in obs["entry"]} == {"orientation"}


def _bad(mutate: Any) -> dict[str, Any]:
    bundle = ig.submission_bundle(IMAGE, CTYPE, ["modality"])
    mutate(bundle)
    return bundle


def _entry(b: dict[str, Any], rtype: str) -> dict[str, Any]:
    return next(e for e in b["entry"] if e["resource"]["resourceType"] == rtype)["resource"]


@pytest.mark.parametrize(
    ("mutate", "status", "code", "text"),
    [
        (
            lambda b: _entry(b, "Task").update(focus={"reference": ig.urn()}),
            400,
            "invalid-bundle",
            "Binary's fullUrl",
        ),
        (lambda b: _entry(b, "Task").update(status="draft"), 400, "invalid-bundle", "requested"),
        (lambda b: b.update(type="batch"), 400, "invalid-bundle", "transaction"),
        (lambda b: b["entry"].pop(0), 400, "invalid-bundle", "2 or 3 entries"),
        (lambda b: _entry(b, "Task")["input"].clear(), 400, "invalid-bundle", ""),
        (
            lambda b: _entry(b, "Task")["input"].append(
                {"type": ig.input_slice("tagDICOM"), "valueString": "body-part"}
            ),
            400,
            "invalid-bundle",
            "unsupported DICOM tag(s): body-part",
        ),
        (
            lambda b: _entry(b, "Binary").update(contentType="image/bmp"),
            400,
            "unsupported-image-format",
            "image/bmp",
        ),
        (
            lambda b: _entry(b, "Binary").update(data="aGVsbG8gd29ybGQ="),
            400,
            "corrupted-data",
            "not a image/jpeg",
        ),
        (
            lambda b: _entry(b, "Binary").update(data="A" * 2_100_000),
            413,
            "image-too-large",
            "larger than",
        ),
    ],
)
def test_bad_bundles_get_operation_outcomes(
    client: httpx.Client, mutate: Any, status: int, code: str, text: str
) -> None:
    resp = post(client, _bad(mutate))
    assert resp.status_code == status
    oo = resp.json()
    fhir_parse(oo)
    issue = oo["issue"][0]
    assert issue["severity"] == "error"
    assert issue["details"]["coding"][0] == {"system": ig.CS_ERRORS, "code": code}
    assert text in issue["diagnostics"]


def test_not_json_and_unknown_ids(client: httpx.Client) -> None:
    resp = client.post("/Bundle", content=b"{", headers={"Content-Type": ig.FHIR_JSON})
    assert resp.status_code == 400
    assert resp.json()["issue"][0]["details"]["coding"][0]["code"] == "invalid-bundle"
    for path in ("/Task/nope", "/Observation/nope", "/Binary/nope", "/Device/nope", "/Nothing"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.json()["resourceType"] == "OperationOutcome"


def test_full_queue_answers_429_with_retry_after() -> None:
    model = Gated()
    app = create_app(model, ServerConfig(workers=1, queue_size=1, retry_after=3))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as c:
        _, first = submit(c, ["modality"])
        _, second = submit(c, ["modality"])
        resp = post(c, ig.submission_bundle(IMAGE, CTYPE, ["modality"]))
        assert resp.status_code == 429
        assert resp.headers["retry-after"] == "3"
        assert resp.json()["issue"][0]["details"]["coding"][0]["code"] == "rate-limit-exceeded"
        assert c.get(f"/Task/{first}").json()["status"] == "in-progress"
        model.gate.set()
        assert wait_final(c, first)["status"] == "completed"
        task = wait_final(c, second)
        assert task["status"] == "completed"
        # an unknown label is still one output per tagDICOM input, marked absent
        obs = c.get("/" + task["output"][0]["valueReference"]["reference"]).json()
        assert obs["valueCodeableConcept"]["coding"][0]["code"] == "XC"
        stats = c.get("/_stats").json()
        assert stats["rejected"] == 1 and stats["completed"] == 2


def test_failed_classification_ends_task_failed() -> None:
    with serve_in_thread(create_app(Broken())) as url, httpx.Client(base_url=url, timeout=10) as c:
        _, tid = submit(c, ["modality"])
        task = wait_final(c, tid)
        fhir_parse(task)
        assert task["status"] == "failed"
        assert task["statusReason"]["concept"]["text"].startswith("corrupted-data")
        assert "output" not in task
        assert c.get("/" + task["focus"]["reference"]).status_code == 410


def test_bearer_token(monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(ColourRuleClassifier(), ServerConfig(token="s3cret-token"))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as c:
        assert c.get("/metadata").status_code == 200
        denied = c.get("/Task")
        assert denied.status_code == 401
        assert denied.headers["www-authenticate"].startswith("Bearer")
        assert "s3cret" not in denied.text
        assert c.get("/Task", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/Task", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    assert "s3cret" not in repr(ServerConfig(token="s3cret-token"))


def test_server_sent_events_follow_the_task() -> None:
    model = Gated()
    with serve_in_thread(create_app(model)) as url, httpx.Client(base_url=url, timeout=10) as c:
        _, tid = submit(c, ["modality", "protocol"])
        statuses = []
        with c.stream("GET", f"/Task/{tid}", headers={"Accept": "text/event-stream"}) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    task = json.loads(line[6:])
                    statuses.append(task["status"])
                    if len(statuses) == 1:
                        model.gate.set()
        assert statuses[0] == "in-progress"
        assert statuses[-1] == "completed"
        assert len(task["output"]) == 2


def test_results_expire_after_retention() -> None:
    app = create_app(ColourRuleClassifier(), ServerConfig(retention=0.2))
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as c:
        _, tid = submit(c, ["modality"])
        task = wait_final(c, tid)
        obs = task["output"][0]["valueReference"]["reference"]
        end = time.monotonic() + 5
        while c.get(f"/Task/{tid}").status_code != 404 and time.monotonic() < end:
            time.sleep(0.05)
        assert c.get(f"/Task/{tid}").status_code == 404
        assert c.get("/" + obs).status_code == 404
        assert app.state.store.counts()["binaries"] == 0


def test_mounted_under_a_base_path() -> None:
    app = create_app(ColourRuleClassifier(), base_path="/fhir")
    with serve_in_thread(app) as url, httpx.Client(base_url=url + "/fhir", timeout=10) as c:
        assert c.get("/metadata").status_code == 200
        _, tid = submit(c, ["modality"])
        assert wait_final(c, tid)["status"] == "completed"


def test_defaults_are_safe() -> None:
    cfg = ServerConfig()
    assert cfg.host == "127.0.0.1" and cfg.token is None and cfg.queue_size > 0
