"""The IG workflow steps against one service: discover (CapabilityStatement), submit the
transaction, wait for the Task (SSE where offered, else polling), read its Observations and the
performer Device. Each step goes through `Transport.request` and its retries.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from ..errors import RemoteError
from ..fhir import ig
from ..fhir.capability import Capability, parse_capability
from ..fhir.responses import inlined, task_id_from
from .bodies import Request
from .errors import RemoteBadResponse, RemoteDeadline
from .poll import bounded_lines, retry_after, sse_data
from .transport import RemoteOptions, Transport

log = logging.getLogger(__name__)


class RemoteService(Transport):
    """One Orthovision AI IG service: the transport plus the workflow steps (cached discovery)."""

    def __init__(
        self,
        options: RemoteOptions,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        verify: bool | ssl.SSLContext = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(options, token=token, headers=headers, verify=verify, transport=transport)
        self._lock = threading.Lock()
        self._capability: Capability | None = None
        self._devices: dict[str, dict[str, Any] | None] = {}

    def capability(self, deadline: float | None = None) -> Capability:
        with self._lock:
            if self._capability is not None:
                return self._capability
        end = deadline or time.monotonic() + self.options.deadline
        data = self.json(self.request("GET", "metadata", deadline=end), "GET /metadata")
        try:
            cap = parse_capability(data)
        except ValueError as exc:
            raise RemoteBadResponse(f"GET /metadata: {exc}") from exc
        with self._lock:
            self._capability = cap
        return cap

    def submit(self, body: Request, deadline: float) -> tuple[str, dict[str, Any] | None, Any]:
        path = "" if self.options.post_to_base else "Bundle"
        resp = self.request("POST", path, body=body, deadline=deadline, idempotent=False)
        if resp.status_code == 202 and not resp.content:
            loc = resp.headers.get("content-location") or resp.headers.get("location") or ""
            data: Any = {"entry": [{"response": {"location": loc}}]}
        else:
            data = self.json(resp, "POST Bundle")
        tid, task = task_id_from(data)
        if tid is None:
            raise RemoteBadResponse("POST Bundle: no Task id in the transaction response")
        return tid, task, data

    def wait(self, tid: str, task: dict[str, Any] | None, deadline: float) -> dict[str, Any]:
        """The Task once final: by SSE where the service offers it, else by polling."""
        if task is not None and task.get("status") in ig.FINAL_STATES:
            return task
        cap = self._capability
        if self.options.use_sse and cap is not None and cap.sse:
            final = self._wait_sse(tid, deadline)
            if final is not None:
                return final
        delays = self.options.poll.delays()
        while True:
            pause = next(delays)
            if time.monotonic() + pause > deadline:
                raise self._still(tid, task)
            time.sleep(pause)
            try:
                resp = self.request("GET", f"Task/{tid}", deadline=deadline)
            except RemoteDeadline:  # the pause ran past the deadline (a loaded machine)
                raise self._still(tid, task) from None
            data = self.json(resp, f"GET Task/{tid}")
            _, found = task_id_from(data)
            if found is None:
                raise RemoteBadResponse(f"GET Task/{tid}: the answer is not a Task", task_id=tid)
            task = found
            if task.get("status") in ig.FINAL_STATES:
                return task
            hint = retry_after(resp.headers.get("retry-after"))
            if hint is not None:
                time.sleep(min(hint, max(0.0, deadline - time.monotonic())))

    def _still(self, tid: str, task: dict[str, Any] | None) -> RemoteDeadline:
        """The deadline reached while the Task was not final: said with its last status."""
        status = task.get("status") if task else "unknown"
        return RemoteDeadline(f"Task {tid} still {status} after {self.options.deadline:.0f} s", task_id=tid)

    def _wait_sse(self, tid: str, deadline: float) -> dict[str, Any] | None:
        """Follow the Task's event stream; None (fall back to polling) on any trouble."""
        url = self.url(f"Task/{tid}")
        try:
            with self.client.stream(
                "GET",
                url,
                headers={"Accept": "text/event-stream"},
                timeout=httpx.Timeout(self.options.timeout, read=max(0.1, deadline - time.monotonic())),
            ) as resp:
                if resp.status_code != 200 or not resp.headers.get("content-type", "").startswith(
                    "text/event-stream"
                ):
                    return None
                # Bounded lines, and the deadline checked on every chunk: keep-alives alone,
                # or an endless line, cannot hold the image past its deadline or its memory.
                for data in sse_data(bounded_lines(resp.iter_bytes(), deadline)):
                    _, task = task_id_from(data)
                    if task is not None and task.get("status") in ig.FINAL_STATES:
                        return task
        except httpx.HTTPError as exc:
            log.debug("Task %s: event stream ended (%s); polling", tid, type(exc).__name__)
        return None

    def observations(
        self, task: dict[str, Any], extra: Iterable[Any], deadline: float
    ) -> list[dict[str, Any]]:
        tid = str(task.get("id"))
        known: dict[str, dict[str, Any]] = {}
        for source in (task, *extra):
            for obs in inlined(source, "Observation"):
                if obs.get("id"):
                    known[str(obs["id"])] = obs
        found: list[dict[str, Any]] = []
        for out in task.get("output") or []:
            ref = str(((out or {}).get("valueReference") or {}).get("reference") or "")
            oid = ref.rstrip("/").split("/")[-1].lstrip("#")
            if oid in known:
                found.append(known[oid])
            elif ref.startswith("#") or not ref:
                raise RemoteBadResponse(f"Task {tid}: output {ref!r} cannot be resolved", task_id=tid)
            else:
                resp = self.request("GET", ref, deadline=deadline)
                obs = self.json(resp, f"GET {ref}")
                if obs.get("resourceType") != "Observation":
                    raise RemoteBadResponse(f"{ref} is not an Observation", task_id=tid)
                found.append(obs)
        if not found and known:
            found = list(known.values())
        return found

    def device(self, task: dict[str, Any], deadline: float) -> dict[str, Any] | None:
        """The performer-device Device (the model), cached; None when not given or unreadable."""
        ref = next(
            (
                str((e.get("valueReference") or {}).get("reference") or "")
                for e in task.get("extension") or []
                if isinstance(e, dict) and e.get("url") == ig.EXT_PERFORMER_DEVICE
            ),
            "",
        ) or str((task.get("owner") or {}).get("reference") or "")
        if ref.split("/")[-2:-1] != ["Device"]:
            return None
        with self._lock:
            if ref in self._devices:
                return self._devices[ref]
        try:
            dev: dict[str, Any] | None = self.json(self.request("GET", ref, deadline=deadline), f"GET {ref}")
        except RemoteError:
            dev = None
        model = None
        if dev is not None:
            names = [n.get("value") for n in dev.get("name") or [] if isinstance(n, dict)]
            versions = [v.get("value") for v in dev.get("version") or [] if isinstance(v, dict)]
            model = {
                "reference": ref,
                "manufacturer": dev.get("manufacturer"),
                "name": dev.get("displayName") or (names[0] if names else None),
                "model_number": dev.get("modelNumber"),
                "version": versions[0] if versions else None,
            }
            model = {k: v for k, v in model.items() if v}
        with self._lock:
            self._devices[ref] = model
        return model
