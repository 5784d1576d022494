"""Reading what a service answers: transaction responses, Tasks, inlined resources."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def task_id_from(body: Any) -> tuple[str | None, dict[str, Any] | None]:
    """The Task id (and the Task, when returned) in a transaction response: from the resource
    itself, else from `entry.response.location` (`Task/{id}` or `Task/{id}/_history/n`)."""
    if not isinstance(body, dict):
        return None, None
    if body.get("resourceType") == "Task" and body.get("id"):
        return str(body["id"]), body
    entries = [e for e in body.get("entry") or [] if isinstance(e, dict)]
    for entry in entries:
        res = entry.get("resource")
        if isinstance(res, dict) and res.get("resourceType") == "Task" and res.get("id"):
            return str(res["id"]), res
    for entry in entries:
        loc = str((entry.get("response") or {}).get("location") or "")
        parts = loc.split("?")[0].strip("/").split("/")
        if "Task" in parts and parts.index("Task") + 1 < len(parts):
            return parts[parts.index("Task") + 1], None
    return None, None


def status_reason(task: dict[str, Any]) -> str:
    """Task.statusReason's text: R5 CodeableReference (`concept.text`), or R4's `text`."""
    sr = task.get("statusReason") or {}
    if not isinstance(sr, dict):
        return ""
    concept: dict[str, Any] = sr["concept"] if isinstance(sr.get("concept"), dict) else sr
    codes = [c.get("code") for c in concept.get("coding") or [] if isinstance(c, dict)]
    return str(concept.get("text") or (codes[0] if codes else "") or "")


def inlined(body: Any, rtype: str) -> Iterator[dict[str, Any]]:
    """Resources of type `rtype` inside a Bundle (entries) or a resource (`contained`)."""
    if not isinstance(body, dict):
        return
    if body.get("resourceType") == rtype:
        yield body
    for entry in body.get("entry") or []:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict):
            yield from inlined(res, rtype)
    for res in body.get("contained") or []:
        if isinstance(res, dict) and res.get("resourceType") == rtype:
            yield res
