"""DICOMweb STOW-RS (PS3.18 10.5) and QIDO-RS checks with httpx.

Instances go in multipart/related batches (`--batch N` instances, at most `--batch-mb` MB per
request). Each instance's result is read from the response's Referenced SOP Sequence and Failed
SOP Sequence; an instance in neither is not counted as stored. 429 and 5xx are retried
(Retry-After, else exponential backoff with jitter), a 413 splits the batch in halves, 401/403
stop this destination (the credentials are wrong for every instance), and so does a server that
cannot be reached after the retries, or a TLS failure no retry can fix (`tls_refusal`). Tokens and
passwords are never logged.
"""

from __future__ import annotations

import json
import os
import ssl
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import httpx

from ..errors import AuthRefused, DestinationError, DestinationUnreachable, TlsRefused, UsageError
from ..remote.poll import RETRY_BACKOFF, Backoff, retry_after
from ..remote.transport import BearerAuth
from .destinations import Destination
from .instances import Instance
from .ledger import FAILED, STORED, Outcome

REFERENCED_SOP_SEQ = "00081199"
FAILED_SOP_SEQ = "00081198"
REFERENCED_SOP_UID = "00081155"
FAILURE_REASON = "00081197"
WARNING_REASON = "00081196"
SOP_INSTANCE_UID = "00080018"
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
# OpenSSL's verification results (X509_V_ERR_*) that say which side must change.
UNTRUSTED_CERT = {2, 18, 19, 20, 21}  # no issuer we trust, self-signed: give --ca-bundle
NAME_MISMATCH = {62, 63, 64}  # the certificate is for another host name, e-mail or IP address
# Alerts from the server (OpenSSL reason codes) that no retry changes, with what they mean.
TLS_ALERTS = (
    ("CERTIFICATE_REQUIRED", "it requires a client certificate (--client-cert)"),
    ("UNKNOWN_CA", "it does not trust our client certificate"),
    ("BAD_CERTIFICATE", "it does not accept our client certificate"),
    ("CERTIFICATE_UNKNOWN", "it does not accept our client certificate"),
    ("HANDSHAKE_FAILURE", "no TLS version or cipher in common, or it wants a client certificate"),
    ("PROTOCOL_VERSION", "no TLS version in common"),
    ("WRONG_VERSION_NUMBER", "the server does not speak TLS on this port: http:// instead?"),
)


def _value(item: dict[str, Any], tag: str) -> Any:
    values = (item.get(tag) or {}).get("Value") or []
    return values[0] if values else None


def failure_outcome(code: int | None, status: int) -> Outcome:
    if code == 0x0111:  # duplicate SOP instance: the server holds it already
        return Outcome(STORED, code, "already-held", "the server already holds this instance")
    if code is not None and 0xA700 <= code <= 0xA7FF:
        return Outcome(
            FAILED, code, "peer-out-of-resources", f"refused 0x{code:04X}: out of resources (storage full?)"
        )
    if code is not None and 0xA900 <= code <= 0xA9FF:
        return Outcome(
            FAILED,
            code,
            "does-not-match-sop-class",
            f"refused 0x{code:04X}: data set does not match SOP class",
        )
    if code is not None and 0xC000 <= code <= 0xCFFF:
        return Outcome(FAILED, code, "cannot-understand", f"refused 0x{code:04X}: cannot understand")
    if code == 0x0122:
        return Outcome(FAILED, code, "sop-class-refused", "refused 0x0122: SOP class not supported")
    text = f"0x{code:04X}" if code is not None else "no reason given"
    return Outcome(FAILED, code, "refused", f"refused by the server (HTTP {status}, {text})")


def read_response(batch: Sequence[Instance], status: int, body: bytes) -> dict[str, Outcome]:
    """Per-instance outcomes from a STOW-RS response body (application/dicom+json)."""
    out: dict[str, Outcome] = {}
    try:
        doc = json.loads(body) if body.strip() else {}
    except ValueError:
        doc = {}
    if isinstance(doc, list):  # some servers wrap the one dataset in an array
        doc = doc[0] if doc and isinstance(doc[0], dict) else {}
    if not isinstance(doc, dict):
        doc = {}
    for item in (doc.get(REFERENCED_SOP_SEQ) or {}).get("Value") or []:
        uid = _value(item, REFERENCED_SOP_UID)
        if uid is None:
            continue
        warning = _value(item, WARNING_REASON)
        if warning is not None:
            out[str(uid)] = Outcome(
                STORED, int(warning), "stored-warning", f"stored with warning 0x{int(warning):04X}"
            )
        else:
            out[str(uid)] = Outcome(STORED, status, "", "")
    for item in (doc.get(FAILED_SOP_SEQ) or {}).get("Value") or []:
        uid = _value(item, REFERENCED_SOP_UID)
        if uid is None:
            continue
        code = _value(item, FAILURE_REASON)
        out[str(uid)] = failure_outcome(int(code) if code is not None else None, status)
    if out:
        unlisted = f"HTTP {status}, but the response does not list this instance as stored"
    else:  # e.g. Orthanc when its storage is full: 200 with both sequences empty or absent
        unlisted = (
            f"HTTP {status}, but the server confirmed none of the {len(batch)} instance(s) of the"
            " request and gave no reason (storage full? see the server's log)"
        )
    for inst in batch:
        if inst.sop_uid not in out:
            out[inst.sop_uid] = Outcome(FAILED, status, "not-confirmed", unlisted)
    return out


def multipart(batch: Sequence[Instance]) -> tuple[bytes, str]:
    """The request body and its Content-Type."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for inst in batch:
        parts.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
        parts.append(inst.path.read_bytes())
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f'multipart/related; type="application/dicom"; boundary={boundary}'


def tls_refusal(exc: BaseException) -> TlsRefused | None:
    """The TLS failure behind `exc` that retrying cannot fix, as one line; None otherwise."""
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, ssl.SSLError):
        seen = seen.__cause__ or seen.__context__
    if seen is None:
        return None
    if isinstance(seen, ssl.SSLCertVerificationError):
        why = str(getattr(seen, "verify_message", None) or seen).rstrip(".")
        verify_code = getattr(seen, "verify_code", None)
        if verify_code in NAME_MISMATCH:
            hint = "the certificate is for another host name: use the name it was issued for"
        elif verify_code in UNTRUSTED_CERT:
            hint = "not issued by a CA we trust: give its CA with --ca-bundle"
        else:
            hint = "see --ca-bundle"
        return TlsRefused(
            f"the server's TLS certificate is not accepted: {why} ({hint})", reason="tls-certificate"
        )
    code = getattr(seen, "reason", None)  # OpenSSL's reason code, when OpenSSL raised it
    for alert, meaning in TLS_ALERTS:
        if alert in f"{code} {seen}":
            return TlsRefused(f"TLS handshake refused ({code or alert}): {meaning}")
    return None


class StowPeer:
    def __init__(
        self,
        dest: Destination,
        *,
        token: str | None = None,
        basic: tuple[str, str] | None = None,
        verify: bool | ssl.SSLContext = True,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: Backoff = RETRY_BACKOFF,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.dest = dest
        auth: httpx.Auth | None = BearerAuth(token) if token else (httpx.BasicAuth(*basic) if basic else None)
        self.client = httpx.Client(
            auth=auth,
            verify=verify,
            headers=headers or {},
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=False,
        )  # a redirect could carry the token elsewhere
        self.retries = retries
        self.backoff = backoff

    def close(self) -> None:
        self.client.close()

    def _request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        """One request, retried on connection errors, 429 and 5xx. Raises DestinationUnreachable
        when the server cannot be reached, AuthRefused on 401/403."""
        delays = self.backoff.delays()
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                resp = self.client.request(method, url, **kw)
            except (httpx.TransportError, ssl.SSLError) as exc:
                refusal = tls_refusal(exc)
                if refusal is not None:  # the same certificate again would fail the same way
                    raise refusal from exc
                if last:
                    raise DestinationUnreachable(f"{type(exc).__name__}: {exc}") from exc
                time.sleep(next(delays))
                continue
            if resp.status_code in (401, 403):
                raise AuthRefused(f"the server refused the credentials (HTTP {resp.status_code})")
            if resp.status_code in RETRY_STATUS and not last:
                wait = retry_after(resp.headers.get("Retry-After"))
                time.sleep(min(wait, 120.0) if wait is not None else next(delays))
                continue
            return resp
        raise AssertionError("unreachable")

    def probe(self) -> None:
        """Reachable and the credentials accepted (a QIDO-RS query for one study)."""
        resp = self._request(
            "GET",
            f"{self.dest.url}/studies",
            params={"limit": "1"},
            headers={"Accept": "application/dicom+json"},
        )
        if resp.status_code in (404, 405) and not resp.content.strip().startswith((b"[", b"{")):
            raise DestinationError(
                f"no DICOMweb service at this URL (HTTP {resp.status_code})", reason="not-dicomweb"
            )

    def store(self, batch: Sequence[Instance]) -> dict[str, Outcome]:
        """POST one batch; a 413 splits it. Per-instance outcomes by SOP Instance UID."""
        try:
            body, ctype = multipart(batch)
        except OSError as exc:
            if len(batch) == 1:
                return {
                    batch[0].sop_uid: Outcome(
                        FAILED, None, "unreadable", f"cannot read {batch[0].rel}: {exc}"
                    )
                }
            half = len(batch) // 2
            return {**self.store(batch[:half]), **self.store(batch[half:])}
        resp = self._request(
            "POST",
            f"{self.dest.url}/studies",
            content=body,
            headers={"Content-Type": ctype, "Accept": "application/dicom+json"},
        )
        code = resp.status_code
        if code == 413 and len(batch) > 1:
            half = len(batch) // 2
            return {**self.store(batch[:half]), **self.store(batch[half:])}
        if code in (200, 202, 409):
            return read_response(batch, code, resp.content)
        if code in (404, 405):
            raise DestinationError(f"no STOW-RS service at this URL (HTTP {code})", reason="not-dicomweb")
        reason = {413: "too-large", 415: "unsupported-media-type", 429: "throttled"}.get(
            code, "server-error" if code >= 500 else f"http-{code}"
        )
        line = f"HTTP {code} {resp.reason_phrase}".strip()
        return {i.sop_uid: Outcome(FAILED, code, reason, line) for i in batch}

    def held(self, instances: Iterable[Instance]) -> set[str]:
        """SOP Instance UIDs the server holds among `instances` (QIDO-RS, one query per study)."""
        studies = sorted({i.study_uid for i in instances})
        found: set[str] = set()
        for study in studies:
            resp = self._request(
                "GET",
                f"{self.dest.url}/studies/{study}/instances",
                params={"includefield": SOP_INSTANCE_UID},
                headers={"Accept": "application/dicom+json"},
            )
            if resp.status_code in (204, 404):
                continue
            if resp.status_code != 200:
                raise DestinationError(f"QIDO-RS failed (HTTP {resp.status_code})", reason="qido-failed")
            try:
                rows = resp.json()
            except ValueError as exc:
                raise DestinationError("QIDO-RS answered no JSON", reason="qido-failed") from exc
            for row in rows if isinstance(rows, list) else []:
                uid = _value(row, SOP_INSTANCE_UID) if isinstance(row, dict) else None
                if uid:
                    found.add(str(uid))
        return found


def batches(items: Sequence[Instance], count: int, max_bytes: int) -> list[list[Instance]]:
    out: list[list[Instance]] = []
    cur: list[Instance] = []
    size = 0
    for inst in items:
        if cur and (len(cur) >= count or size + inst.size > max_bytes):
            out.append(cur)
            cur, size = [], 0
        cur.append(inst)
        size += inst.size
    if cur:
        out.append(cur)
    return out


def env_basic(var: str) -> tuple[str, str]:
    """`user:password` from an environment variable (never from the command line)."""
    value = os.environ.get(var, "")
    user, sep, password = value.partition(":")
    if not sep or not user:
        raise UsageError(f"the environment variable {var} must hold user:password")
    return user, password
