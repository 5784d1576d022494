"""Why one image failed remotely: `RemoteError` subclasses, each with a stable reason code."""

from __future__ import annotations

from typing import Any

from ..errors import RemoteError
from ..fhir.ig import CS_ERRORS


class RemoteTimeout(RemoteError):
    reason = "remote-timeout"


class RemoteConnectError(RemoteError):
    reason = "remote-connect"


class RemoteTLSError(RemoteConnectError):
    reason = "remote-tls"


class RemoteDropped(RemoteError):
    """The connection broke before a whole answer came back."""

    reason = "remote-dropped"


class RemoteBadResponse(RemoteError):
    """The service answered something that is not the FHIR the IG promises."""

    reason = "remote-bad-response"


class RemoteHTTPError(RemoteError):
    """An HTTP error status, with the OperationOutcome's IG error code when there was one."""

    def __init__(self, message: str, *, error_code: str | None = None, **kw: Any) -> None:
        status = kw.get("status_code")
        kw.setdefault("reason", f"remote-http-{status}" if status else "remote-http")
        super().__init__(message, **kw)
        self.error_code = error_code


class RemoteUnsupportedTag(RemoteError):
    reason = "remote-unsupported-tag"


class RemoteTaskFailed(RemoteError):
    reason = "remote-task-failed"


class RemoteDeadline(RemoteError):
    """The Task did not finish within the per-image deadline."""

    reason = "remote-deadline"


def outcome_line(outcome: Any) -> tuple[str, str | None, str | None]:
    """(one line of text, IG error code, issue code) of an OperationOutcome."""
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        return "", None, None
    parts: list[str] = []
    ig_code = issue_code = None
    for issue in outcome.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        details = issue.get("details") or {}
        codes = [
            str(c.get("code"))
            for c in details.get("coding") or []
            if isinstance(c, dict) and c.get("code") and c.get("system") == CS_ERRORS
        ]
        if ig_code is None and codes:
            ig_code = codes[0]
        if issue_code is None:
            issue_code = issue.get("code")
        text = issue.get("diagnostics") or details.get("text") or ""
        label = codes[0] if codes else (issue.get("code") or "")
        parts.append(f"{label}: {text}".strip(": ") if text else str(label))
    return " ".join("; ".join(p for p in parts if p).split())[:500], ig_code, issue_code
