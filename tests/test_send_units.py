"""Destination parsing, DIMSE status mapping and STOW-RS fault handling (faults injected with an
httpx mock transport; the real peers are in test_send_orthanc.py)."""

from __future__ import annotations

import json
import re
import ssl
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset

from orthovision_cli.errors import AuthRefused, DestinationUnreachable, TlsRefused, UsageError
from orthovision_cli.remote.poll import Backoff
from orthovision_cli.send.destinations import parse_destination
from orthovision_cli.send.dimse import Contexts, status_outcome
from orthovision_cli.send.instances import Instance
from orthovision_cli.send.options import tls_context
from orthovision_cli.send.stow import StowPeer, batches, read_response

FAST = Backoff(first=0.001, factor=1.0, cap=0.001, jitter=0.0)
VL = "1.2.840.10008.5.1.4.1.1.77.1.4"


def test_parse_destinations() -> None:
    d = parse_destination("dicom://PACS@Example.org:11112")
    assert (d.kind, d.called_ae, d.host, d.port, d.tls) == ("dimse", "PACS", "example.org", 11112, False)
    assert parse_destination("dicoms://PACS@h:2762").tls
    s = parse_destination("https://pacs.example.org/dicom-web/studies/")
    assert (s.kind, s.url) == ("stow", "https://pacs.example.org/dicom-web")
    for bad in (
        "dicom://h:104",
        "dicom://AE@h",
        "ftp://x",
        "https://u:p@h/dicom-web",
        "dicom://A\\B@h:1",
        "dicom://WAYTOOLONGAETITLE17@h:1",
    ):
        with pytest.raises(UsageError):
            parse_destination(bad)


AE = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="\\@:/?#[]%"),
    min_size=1,
    max_size=16,
)


@given(ae=AE, port=st.integers(1, 65535), tls=st.booleans())
def test_destination_key_round_trips(ae: str, port: int, tls: bool) -> None:
    d = parse_destination(f"{'dicoms' if tls else 'dicom'}://{ae}@127.0.0.1:{port}")
    assert parse_destination(d.key) == parse_destination(d.key)
    assert parse_destination(d.key).key == d.key
    assert (d.called_ae, d.port, d.tls) == (ae, port, tls)


def _status(code: int, comment: str = "") -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment
    return ds


def test_dimse_status_mapping() -> None:
    assert status_outcome(_status(0)).stored
    warn = status_outcome(_status(0xB000, "coerced"))
    assert warn.stored and warn.reason == "stored-warning" and "coerced" in warn.message
    full = status_outcome(_status(0xA700, "disk full"))
    assert not full.stored and full.reason == "peer-out-of-resources" and "0xA700" in full.message
    assert status_outcome(_status(0x0122)).reason == "sop-class-refused"
    assert status_outcome(_status(0xC123)).reason == "cannot-understand"
    assert status_outcome(Dataset()).reason == "connection-lost"


def _inst(tmp: Path, n: int, size: int = 10) -> Instance:
    p = tmp / f"{n}.dcm"
    p.write_bytes(f"UID=1.2.3.{n};".encode().ljust(size, b"x"))
    return Instance(p, p.name, VL, f"1.2.3.{n}", "1.2.840.10008.1.2.4.50", "1.2", "1.2.1", size, 0)


def test_contexts_from_what_is_present(tmp_path: Path) -> None:
    a = _inst(tmp_path, 1)
    ctx = Contexts.for_instances([a])
    assert ctx.store[VL] == [["1.2.840.10008.1.2.4.50"], ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]]


def _seq(uids: list[str], failed: dict[str, int]) -> dict[str, object]:
    doc: dict[str, object] = {}
    if uids:
        doc["00081199"] = {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": [u]}} for u in uids]}
    if failed:
        doc["00081198"] = {
            "vr": "SQ",
            "Value": [
                {"00081155": {"vr": "UI", "Value": [u]}, "00081197": {"vr": "US", "Value": [c]}}
                for u, c in failed.items()
            ],
        }
    return doc


def test_read_response_per_instance(tmp_path: Path) -> None:
    insts = [_inst(tmp_path, i) for i in range(4)]
    body = json.dumps(_seq(["1.2.3.0", "1.2.3.1"], {"1.2.3.2": 0xA700})).encode()
    out = read_response(insts, 202, body)
    assert out["1.2.3.0"].stored and out["1.2.3.1"].stored
    assert out["1.2.3.2"].reason == "peer-out-of-resources"
    assert out["1.2.3.3"].reason == "not-confirmed" and not out["1.2.3.3"].stored
    assert "does not list this instance" in out["1.2.3.3"].message


@pytest.mark.parametrize("body", [b"", b"{}", json.dumps(_seq([], {})).encode(), b"[{}]"])
def test_read_response_that_confirms_nothing_says_so(tmp_path: Path, body: bytes) -> None:
    # Orthanc's answer when its storage is full: HTTP 200, nothing listed, no reason.
    insts = [_inst(tmp_path, i) for i in range(3)]
    out = read_response(insts, 200, body)
    assert {o.reason for o in out.values()} == {"not-confirmed"}
    assert not any(o.stored for o in out.values())
    (message,) = {o.message for o in out.values()}
    assert "confirmed none of the 3 instance(s)" in message and "gave no reason" in message


def _peer(handler: object, **kw: object) -> StowPeer:
    dest = parse_destination("http://127.0.0.1:9/dicom-web")
    return StowPeer(dest, transport=httpx.MockTransport(handler), backoff=FAST, **kw)  # type: ignore[arg-type]


def test_413_splits_batches_429_waits_5xx_retries(tmp_path: Path) -> None:
    insts = [_inst(tmp_path, i) for i in range(5)]
    calls: list[int] = []

    def handler(req: httpx.Request) -> httpx.Response:
        n = req.content.count(b"Content-Type: application/dicom\r\n")
        calls.append(n)
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "0"})
        if len(calls) == 2:
            return httpx.Response(503)
        if n > 2:
            return httpx.Response(413)
        uids = re.findall(r"UID=([0-9.]+);", req.content.decode("latin-1"))
        accepted.extend(uids)
        return httpx.Response(200, json=_seq(uids, {}))

    accepted: list[str] = []
    out = _peer(handler).store(insts)
    # 429 and 503 retried with the whole batch; 413 split it until the server took each part.
    assert calls == [5, 5, 5, 2, 3, 1, 2]
    assert sorted(accepted) == sorted(i.sop_uid for i in insts)  # each sent once, once accepted
    assert all(o.stored for o in out.values())


def test_401_stops_the_destination_and_hides_the_token(tmp_path: Path) -> None:
    seen: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req.headers.get("authorization", ""))
        return httpx.Response(401)

    peer = _peer(handler, token="tok-SECRET")
    with pytest.raises(AuthRefused) as err:
        peer.store([_inst(tmp_path, 1)])
    assert (
        seen == ["Bearer tok-SECRET"]
        and "SECRET" not in str(err.value)
        and "SECRET" not in repr(peer.client.auth)
    )


def test_connection_errors_retry_then_unreachable(tmp_path: Path) -> None:
    n = 0

    def handler(req: httpx.Request) -> httpx.Response:
        nonlocal n
        n += 1
        raise httpx.ConnectError("refused", request=req)

    with pytest.raises(DestinationUnreachable):
        _peer(handler, retries=2).store([_inst(tmp_path, 1)])
    assert n == 3


def _verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    err = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    err.verify_code, err.verify_message = code, message
    return err


@pytest.mark.parametrize(
    ("cause", "reason", "words"),
    [
        (_verify_error(20, "unable to get local issuer certificate"), "tls-certificate", "--ca-bundle"),
        (_verify_error(64, "IP address mismatch"), "tls-certificate", "another host name"),
        (ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] x"), "tls-refused", "--client-cert"),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] x"), "tls-refused", "http://"),
    ],
)
def test_tls_refusals_are_not_retried(tmp_path: Path, cause: ssl.SSLError, reason: str, words: str) -> None:
    n = 0

    def handler(req: httpx.Request) -> httpx.Response:
        nonlocal n
        n += 1
        raise httpx.ConnectError(str(cause), request=req) from cause

    with pytest.raises(TlsRefused) as err:
        _peer(handler, retries=3).probe()
    assert n == 1  # a certificate does not change between attempts
    assert err.value.reason == reason and words in err.value.message
    assert "\n" not in err.value.one_line()


def test_tls_context_options(tmp_path: Path) -> None:
    assert tls_context() is None
    insecure = tls_context(insecure=True)
    assert insecure is not None and insecure.verify_mode == ssl.CERT_NONE and not insecure.check_hostname
    with pytest.raises(UsageError, match="--client-key needs --client-cert"):
        tls_context(client_key=tmp_path / "k.pem")
    with pytest.raises(UsageError, match="cannot use the CA bundle"):
        tls_context(ca_bundle=tmp_path / "missing.pem")
    (tmp_path / "c.pem").write_text("not a certificate\n")
    with pytest.raises(UsageError, match="cannot use the client certificate"):
        tls_context(client_cert=tmp_path / "c.pem")


def test_batches_respect_count_and_bytes(tmp_path: Path) -> None:
    insts = [_inst(tmp_path, i, size=40) for i in range(7)]
    assert [len(b) for b in batches(insts, 3, 10_000)] == [3, 3, 1]
    assert [len(b) for b in batches(insts, 10, 100)] == [2, 2, 2, 1]


def test_409_is_read_per_instance(tmp_path: Path) -> None:
    insts = [_inst(tmp_path, i) for i in range(3)]

    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(409, json=_seq([], {"1.2.3.0": 0xA700, "1.2.3.1": 0x0111, "1.2.3.2": 0xC000}))

    out = _peer(handler).store(insts)
    assert out["1.2.3.0"].reason == "peer-out-of-resources" and not out["1.2.3.0"].stored
    assert out["1.2.3.1"].stored and out["1.2.3.1"].reason == "already-held"  # duplicate: held already
    assert out["1.2.3.2"].reason == "cannot-understand"
