"""The remote classifier against the reference service over real HTTP on 127.0.0.1."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("starlette")

from testdata import DATA

from orthovision_cli.config import RemoteSettings
from orthovision_cli.errors import InputError, RemoteError, UsageError
from orthovision_cli.fhir import ig
from orthovision_cli.fhir.capability import parse_capability
from orthovision_cli.inputs.source import SourceImage
from orthovision_cli.labels.model import Label, Labels
from orthovision_cli.remote import RemoteClassifier, build_remote_source
from orthovision_cli.remote.bodies import submission_body
from orthovision_cli.remote.errors import RemoteTLSError, RemoteUnsupportedTag, outcome_line
from orthovision_cli.remote.poll import Backoff, retry_after, sse_data
from orthovision_cli.remote.transport import public_url
from orthovision_cli.server.app import create_app
from orthovision_cli.server.config import ServerConfig
from orthovision_cli.server.rules import ColourRuleClassifier
from orthovision_cli.server.runner import serve_in_thread

FACE = DATA / "photos" / "faces_london" / "rest" / "005_03.jpg"
CHEST = DATA / "radiographs" / "chest" / "19073f37.png"
STARSHOT = DATA / "film_scans" / "starshot.tif"


class Coded:
    """Answers fixed labels with the codes a model pack gives (to test the mapping back)."""

    name = "coded"
    version = "2.1"
    tags = ("modality", "protocol", "body_part", "orientation")

    def classify(self, image: Any) -> Labels:
        return Labels(
            modality=Label("modality", "XC", 0.97, self.name),
            protocol=Label("protocol", "Frontal Facial view", 0.8, self.name),
            body_part=Label("body_part", "HEAD", 0.9, self.name),
            orientation=Label("orientation", "90+flip", 0.7, self.name),
        )


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    app = create_app(Coded(), ServerConfig(workers=2))
    with serve_in_thread(app) as url:
        yield url


def image(path: Path) -> SourceImage:
    return SourceImage(path=path, rel=path.name)


@pytest.mark.parametrize("sse", [True, False])
def test_classify_maps_observations_onto_labels(service: str, sse: bool) -> None:
    with build_remote_source(service, RemoteSettings(timeout=10), use_sse=sse) as rc:
        labels = rc.classify(image(FACE))
    assert labels.value("modality") == "XC"
    assert labels.modality is not None and labels.modality.codes[0].scheme == "DCM"
    assert labels.modality.confidence == pytest.approx(0.97)
    prot = labels.protocol
    assert prot is not None
    try:
        from orthovision_cli.vocab import terms  # noqa: F401

        assert prot.value == "EV15"  # "Frontal Facial view" mapped to the ADA-1100 view
        assert prot.detail["service_value"] == "Frontal Facial view"
    except ImportError:
        assert prot.value == "Frontal Facial view"
    assert labels.value("body_part") == "HEAD"
    assert labels.value("orientation") == "90+flip"
    detail = labels.modality.detail
    assert detail["service"] == public_url(service)
    assert detail["model"]["name"] == "coded" and detail["model"]["version"] == "2.1"
    assert detail["task"]


def test_classify_many_mixed_formats_and_post_to_base(service: str, tmp_path: Path) -> None:
    images = [image(p) for p in (FACE, CHEST, STARSHOT) if p.exists()]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    images.append(image(broken))
    with build_remote_source(service, RemoteSettings(post_to_base=True, concurrency=3)) as rc:
        results = dict((img.path.name, res) for img, res in rc.classify_many(images))
    assert len(results) == len(images)
    for name, res in results.items():
        if name == "broken.jpg":
            assert isinstance(res, InputError)
            assert res.reason == "unsupported-format"
            assert res.path == broken
        else:
            assert isinstance(res, Labels), res
            assert res.value("modality") == "XC"


def test_unsupported_tags_are_named(tmp_path: Path) -> None:
    app = create_app(ColourRuleClassifier(), ServerConfig(tags=("modality",)))
    src = tmp_path / "x.png"
    from orthovision_cli.fhir.conformance import sample_image

    src.write_bytes(sample_image()[0])
    with serve_in_thread(app) as url:
        with build_remote_source(url, RemoteSettings(tags=("Modality", "body-part"))) as rc:
            assert rc.unsupported_tags == ["body_part"]
            labels = rc.classify(image(src))
            assert labels.value("modality") == "XC" and labels.body_part is None
        with build_remote_source(url, RemoteSettings(tags=("0018,0015",))) as rc:
            with pytest.raises(RemoteUnsupportedTag) as err:
                rc.classify(image(src))
            assert "offers: modality" in err.value.one_line()
            assert err.value.reason == "remote-unsupported-tag"


def test_token_is_sent_and_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(Coded(), ServerConfig(token="tok-abc-123"))
    src = tmp_path / "a.jpg"
    from orthovision_cli.fhir.conformance import sample_image

    src.write_bytes(sample_image()[0])
    token_file = tmp_path / "token"
    token_file.write_text("tok-abc-123\n")
    with serve_in_thread(app) as url:
        with build_remote_source(url, RemoteSettings(token_file=token_file)) as rc:
            assert rc.classify(image(src)).value("modality") == "XC"
            assert "tok-abc" not in repr(rc.service.client.auth)
        monkeypatch.setenv("OV_TOKEN", "wrong")
        with (
            build_remote_source(url, RemoteSettings(token_env="OV_TOKEN")) as rc,
            pytest.raises(RemoteError) as e,
        ):
            rc.classify(image(src))
        assert e.value.reason == "remote-http-401"
        assert "tok-abc" not in str(e.value) and "wrong" not in str(e.value)


def test_tls_to_a_plain_http_port_is_a_tls_error(service: str, tmp_path: Path) -> None:
    from orthovision_cli.fhir.conformance import sample_image

    src = tmp_path / "a.jpg"
    src.write_bytes(sample_image()[0])
    tls_url = service.replace("http://", "https://")
    with build_remote_source(tls_url, RemoteSettings(timeout=3)) as rc, pytest.raises(RemoteTLSError) as err:
        rc.classify(image(src))
    assert err.value.reason == "remote-tls"


def test_build_remote_source_checks_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError):
        build_remote_source("ftp://example.org/fhir")
    with pytest.raises(UsageError, match="credentials"):
        build_remote_source("https://user:pw@example.org/fhir")
    monkeypatch.delenv("OV_NO_SUCH", raising=False)
    with pytest.raises(UsageError, match="OV_NO_SUCH"):
        build_remote_source("https://example.org/fhir", RemoteSettings(token_env="OV_NO_SUCH"))
    with pytest.raises(UsageError):
        build_remote_source("https://example.org/fhir", RemoteSettings(ca_bundle=tmp_path / "missing.pem"))
    with pytest.raises(UsageError, match="unknown tag"):
        build_remote_source("https://example.org/fhir", RemoteSettings(tags=("colour",)))
    rc = build_remote_source(
        "https://example.org/fhir", RemoteSettings(tags=("0008,0060", "view"), concurrency=8)
    )
    assert isinstance(rc, RemoteClassifier) and rc.requested == ["modality", "protocol"]
    assert rc.service.client._transport._pool._max_connections >= 16  # type: ignore[attr-defined]
    rc.close()


def test_capability_both_shapes_and_spellings() -> None:
    cap = parse_capability(
        {
            "resourceType": "CapabilityStatement",
            "fhirVersion": "5.0.0",
            "extension": [
                {"url": ig.EXT_SUPPORTED_TAGS, "valueString": "Modality"},
                {
                    "url": ig.EXT_SUPPORTED_TAGS,
                    "extension": [
                        {"url": "tagIdentifier", "valueString": "0008,0060"},
                        {"url": "description", "valueString": "dup of modality"},
                    ],
                },
                {
                    "url": ig.EXT_SUPPORTED_TAGS,
                    "extension": [{"url": "tagIdentifier", "valueString": "0018,1030"}],
                },
                {"url": ig.EXT_SUPPORTED_TAGS, "valueString": "lens-type"},
            ],
        }
    )
    assert cap.seam_tags == ["modality", "protocol"]
    assert cap.spelling("modality") == "Modality" and cap.spelling("protocol") == "0018,1030"
    assert [s.raw for s in cap.tags][-1] == "lens-type"


def test_streamed_body_is_valid_fhir_json() -> None:
    import base64
    import json

    data = bytes(range(256)) * 3000 + b"xy"
    req = submission_body(data, "image/png", ["modality"], modality="XC")
    raw = b"".join(req.parts())
    assert len(raw) == req.length
    bundle = json.loads(raw)
    assert base64.b64decode(bundle["entry"][0]["resource"]["data"]) == data
    study = bundle["entry"][1]["resource"]
    assert study["resourceType"] == "ImagingStudy" and "reference" not in study["subject"]


def test_small_helpers() -> None:
    assert public_url("https://u:p@host:8443/fhir/?token=x#f") == "https://host:8443/fhir"
    assert retry_after("3") == 3.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after("soon") is None
    d = Backoff(first=1, factor=2, cap=5, jitter=0).delays()
    assert [next(d) for _ in range(5)] == [1, 2, 4, 5, 5]
    events = list(sse_data([": hi", "event: task", 'data: {"a":', "data: 1}", "", "data: x", ""]))
    assert events == [{"a": 1}]
    text, code, issue = outcome_line(ig.outcome("boom", error_code="corrupted-data"))
    assert (text, code, issue) == ("corrupted-data: boom", "corrupted-data", "invalid")


def test_transport_is_injectable(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": "0"}, json=ig.outcome("down"))

    from orthovision_cli.fhir.conformance import sample_image

    src = tmp_path / "a.jpg"
    src.write_bytes(sample_image()[0])
    rc = build_remote_source(
        "https://ai.example.org/fhir", RemoteSettings(deadline=5), transport=httpx.MockTransport(handler)
    )
    with rc, pytest.raises(RemoteError) as err:
        rc.classify(image(src))
    assert err.value.reason == "remote-http-503"
    assert "GET /fhir/metadata" in err.value.one_line()
    shutil.rmtree(tmp_path, ignore_errors=True)
