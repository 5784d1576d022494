"""In-memory state of the service: Tasks, Observations, Binaries, expiry. Thread-safe.

Nothing that identifies a patient is stored: a Task keeps the tags asked for, the pixels stay
only until the Task ends, and of an ImagingStudy only the modality is kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..fhir import ig

Listener = Callable[[str], None]


@dataclass
class TaskRecord:
    id: str
    tags: list[str]
    binary_id: str
    content_type: str
    study_id: str | None = None
    modality: str | None = None
    authored_on: str | None = None
    status: str = "in-progress"
    business_status: str = "queued"
    status_reason: str | None = None
    outputs: list[str] = field(default_factory=list)
    created: float = field(default_factory=time.monotonic)
    last_modified: str = field(default_factory=ig.now_iso)
    ended: float | None = None

    @property
    def final(self) -> bool:
        return self.status in ig.FINAL_STATES


class Store:
    """All resources of the service, each kept `retention` seconds after its Task ended."""

    def __init__(self, *, retention: float, device_id: str) -> None:
        self.retention = retention
        self.device_id = device_id
        self._lock = threading.Lock()
        self.tasks: dict[str, TaskRecord] = {}
        self.observations: dict[str, dict[str, Any]] = {}
        self.binaries: dict[str, bytes] = {}
        self.studies: dict[str, str | None] = {}
        self.gone: dict[str, float] = {}  # Binary/ImagingStudy id -> when the Task expires
        self._listeners: dict[str, list[Listener]] = {}

    # -- writes
    def add(self, rec: TaskRecord, image: bytes) -> None:
        with self._lock:
            self.tasks[rec.id] = rec
            self.binaries[rec.binary_id] = image
            if rec.study_id:
                self.studies[rec.study_id] = rec.modality

    def image(self, task_id: str) -> bytes | None:
        with self._lock:
            rec = self.tasks.get(task_id)
            return self.binaries.get(rec.binary_id) if rec else None

    def update(self, task_id: str, business_status: str) -> None:
        with self._lock:
            rec = self.tasks.get(task_id)
            if rec is None or rec.final:
                return
            rec.business_status = business_status
            rec.last_modified = ig.now_iso()
        self._notify(task_id)

    def finish(
        self,
        task_id: str,
        status: str,
        *,
        observations: list[dict[str, Any]] = (),  # type: ignore[assignment]
        reason: str | None = None,
    ) -> None:
        """End a Task (completed/failed/cancelled) and drop its pixels at once."""
        with self._lock:
            rec = self.tasks.get(task_id)
            if rec is None or rec.final:
                return
            for obs in observations:
                self.observations[obs["id"]] = obs
            rec.outputs = [o["id"] for o in observations]
            rec.status = status
            rec.status_reason = reason
            rec.business_status = status
            rec.last_modified = ig.now_iso()
            rec.ended = time.monotonic()
            expiry = rec.ended + self.retention
            self.binaries.pop(rec.binary_id, None)
            self.gone[rec.binary_id] = expiry
            if rec.study_id:
                self.studies.pop(rec.study_id, None)
                self.gone[rec.study_id] = expiry
        self._notify(task_id)

    def sweep(self, now: float | None = None) -> int:
        """Forget Tasks (and their Observations) ended more than `retention` seconds ago."""
        now = time.monotonic() if now is None else now
        dropped = 0
        with self._lock:
            for tid in [
                t for t, r in self.tasks.items() if r.ended is not None and now - r.ended > self.retention
            ]:
                rec = self.tasks.pop(tid)
                for oid in rec.outputs:
                    self.observations.pop(oid, None)
                self._listeners.pop(tid, None)
                dropped += 1
            for gid in [g for g, until in self.gone.items() if now > until]:
                del self.gone[gid]
        return dropped

    # -- reads
    def task(self, task_id: str) -> TaskRecord | None:
        with self._lock:
            return self.tasks.get(task_id)

    def search_tasks(self, statuses: set[str] | None, limit: int) -> list[TaskRecord]:
        with self._lock:
            recs = [r for r in self.tasks.values() if statuses is None or r.status in statuses]
        return recs[-limit:] if limit else []

    def search_observations(self, codes: set[str] | None, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            obs = list(self.observations.values())
        if codes is not None:
            obs = [o for o in obs if {c.get("code") for c in o["code"]["coding"]} & codes]
        return obs[-limit:] if limit else []

    def counts(self) -> dict[str, int]:
        with self._lock:
            active = sum(1 for r in self.tasks.values() if not r.final)
            return {
                "tasks": len(self.tasks),
                "active": active,
                "observations": len(self.observations),
                "binaries": len(self.binaries),
                "binary_bytes": sum(len(b) for b in self.binaries.values()),
            }

    # -- change notification (SSE)
    def listen(self, task_id: str, fn: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.setdefault(task_id, []).append(fn)

        def remove() -> None:
            with self._lock:
                fns = self._listeners.get(task_id)
                if fns and fn in fns:
                    fns.remove(fn)

        return remove

    def _notify(self, task_id: str) -> None:
        with self._lock:
            fns = list(self._listeners.get(task_id, ()))
        for fn in fns:
            fn(task_id)


def task_resource(rec: TaskRecord, device_id: str) -> dict[str, Any]:
    """The OrthovisionAITask as the service shows it."""
    inputs: list[dict[str, Any]] = []
    if rec.study_id:
        inputs.append(
            {
                "type": ig.input_slice("imagingStudy"),
                "valueReference": {"reference": f"ImagingStudy/{rec.study_id}"},
            }
        )
    inputs += [{"type": ig.input_slice("tagDICOM"), "valueString": t} for t in rec.tags]
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": rec.id,
        "meta": {"profile": [ig.PROFILE_TASK], "lastUpdated": rec.last_modified},
        "extension": [
            {"url": ig.EXT_PERFORMER_DEVICE, "valueReference": {"reference": f"Device/{device_id}"}}
        ],
        "status": rec.status,
        "businessStatus": {"text": rec.business_status},
        "intent": "order",
        "doNotPerform": False,
        "code": {"coding": [{"system": ig.CS_TASK_CODE, "code": "fulfill"}]},
        "focus": {"reference": f"Binary/{rec.binary_id}"},
        "lastModified": rec.last_modified,
        "input": inputs,
    }
    if rec.authored_on:
        task["authoredOn"] = rec.authored_on
    if rec.status_reason:
        task["statusReason"] = {"concept": {"text": rec.status_reason}}  # R5: CodeableReference
    if rec.outputs:
        task["output"] = [
            {
                "type": {"coding": [{"system": ig.CS_TASK_OUTPUT, "code": "observation"}]},
                "valueReference": {"reference": f"Observation/{oid}"},
            }
            for oid in rec.outputs
        ]
    return task
