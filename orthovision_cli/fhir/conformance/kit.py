"""The checks of `orthovision conformance URL`: the Orthovision AI IG workflow run against any
service, each step judged with its evidence.

Over 400 lines on purpose: one class walks the workflow in the order a service meets it
(discovery, submission, Task, Observations, Device, clean-up, search, errors), and each check
reads best beside the step it judges. The kit speaks plain HTTP through httpx (no Starlette), so
it runs from the plain CLI.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from ...vocab.tags import normalise_tag
from .. import ig
from ..capability import Capability, parse_capability
from ..labels import observation_confidence, observation_tag
from ..responses import status_reason, task_id_from
from ..validate import fhir_parse
from .report import Check, Report
from .sample import sample_image

UNSUPPORTED_TAG = "orthovision-conformance-no-such-tag"


class _Failed(Exception):
    pass


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _Failed(f"HTTP {resp.status_code}, body is not JSON: {resp.text[:120]!r}") from exc


def _outcome_evidence(resp: httpx.Response) -> tuple[bool, str]:
    """Whether a response is a proper IG error: 4xx + OperationOutcome with an error issue."""
    try:
        body = resp.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False, f"HTTP {resp.status_code}, body is not JSON"
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        kind = body.get("resourceType") if isinstance(body, dict) else type(body).__name__
        return False, f"HTTP {resp.status_code}, body is a {kind}, not an OperationOutcome"
    try:
        fhir_parse(body)
    except ValueError as exc:
        return False, f"HTTP {resp.status_code}, {exc}"
    issues = [i for i in body.get("issue") or [] if i.get("severity") in ("error", "fatal")]
    if not issues:
        return False, f"HTTP {resp.status_code}, OperationOutcome without an error issue"
    codes = [
        c.get("code")
        for c in (issues[0].get("details") or {}).get("coding") or []
        if c.get("system") == ig.CS_ERRORS
    ]
    ok = 400 <= resp.status_code < 500
    return ok, (
        f"HTTP {resp.status_code}, issue.code={issues[0].get('code')}, IG error code="
        f"{codes[0] if codes else '(none)'}: {issues[0].get('diagnostics') or ''}"
    )


class Conformance:
    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.Client,
        deadline: float = 60.0,
        image: tuple[bytes, str] | None = None,
        post_path: str = "Bundle",
        progress: Callable[[Check], None] | None = None,
    ) -> None:
        self.base = base_url.rstrip("/")
        self.client = client
        self.deadline = deadline
        self.image, self.content_type = image or sample_image()
        self.post_path = post_path
        self.report = Report(self.base)
        self.progress = progress

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    def add(self, name: str, ok: bool | None, evidence: str) -> bool:
        result = self.report.add(name, ok, evidence)
        if self.progress:
            self.progress(self.report.checks[-1])
        return result

    def post(self, bundle: Any, *, raw: bytes | None = None) -> httpx.Response:
        content = raw if raw is not None else json.dumps(bundle).encode()
        return self.client.post(
            self.url(self.post_path),
            content=content,
            headers={"Content-Type": ig.FHIR_JSON, "Accept": ig.FHIR_JSON},
        )

    # -- the workflow
    def run(self) -> Report:
        cap = self.discovery()
        if cap is None:
            return self.report
        spellings = [s.raw for s in cap.tags]
        tasks: list[tuple[str, list[str], str]] = []
        for raw in spellings:
            if (tid := self.submit(f"submit[{raw}]", [raw])) is not None:
                tasks.append((f"[{raw}]", [raw], tid))
        if len(spellings) > 1 and (tid := self.submit("submit[all tags]", spellings)) is not None:
            tasks.append(("[all tags]", spellings, tid))
        for label, tags, tid in tasks:
            task = self.wait(f"complete{label}", tid)
            if task is not None:
                self.task_checks(label, tags, task)
        if tasks:
            self.task_search()
        self.unsupported_tag(spellings[0] if spellings else None)
        self.malformed()
        return self.report

    def discovery(self) -> Capability | None:
        try:
            resp = self.client.get(self.url("metadata"), headers={"Accept": ig.FHIR_JSON})
            body = _json(resp)
            if resp.status_code != 200:
                raise _Failed(f"HTTP {resp.status_code}")
            fhir_parse(body)
            cap = parse_capability(body)
        except (_Failed, ValueError, httpx.HTTPError) as exc:
            self.add("discovery: GET /metadata", False, str(exc) or type(exc).__name__)
            return None
        ctype = resp.headers.get("content-type", "")
        self.add("discovery: GET /metadata", True, f"CapabilityStatement, content-type {ctype}")
        self.add(
            "discovery: FHIR R5",
            (cap.fhir_version or "").startswith("5."),
            f"fhirVersion={cap.fhir_version}",
        )
        if not self.add(
            "discovery: supported-dicom-tags",
            bool(cap.tags),
            "tags: " + ", ".join(s.raw for s in cap.tags)
            if cap.tags
            else "no supported-dicom-tags extension",
        ):
            return None
        self.add(
            "discovery: SSE advertised",
            True if cap.sse else None,
            "Task event stream advertised" if cap.sse else "not advertised (optional)",
        )
        return cap

    def submit(self, name: str, tags: list[str]) -> str | None:
        bundle = ig.submission_bundle(self.image, self.content_type, tags)
        try:
            resp = self.post(bundle)
            body = _json(resp)
            if resp.status_code not in (200, 201):
                _ok, ev = _outcome_evidence(resp)
                raise _Failed(f"valid submission refused: {ev}")
            if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
                raise _Failed("response is not a Bundle")
            fhir_parse(body)
            if body.get("type") != "transaction-response":
                raise _Failed(f"Bundle.type={body.get('type')}, expected transaction-response")
            tid, task = task_id_from(body)
            if tid is None:
                raise _Failed("no Task id in the response (entry.response.location or resource)")
            status = (task or {}).get("status")
            if task is not None and status not in ("in-progress", "accepted", "ready", "completed"):
                raise _Failed(f"returned Task status {status!r}; the IG moves it to in-progress")
        except (_Failed, ValueError, httpx.HTTPError) as exc:
            self.add(name, False, str(exc) or type(exc).__name__)
            return None
        self.add(
            name,
            True,
            f"HTTP {resp.status_code}, Task/{tid}" + (f" status={status}" if task else ""),
        )
        return tid

    def wait(self, name: str, tid: str) -> dict[str, Any] | None:
        end = time.monotonic() + self.deadline
        delay, polls, task = 0.05, 0, None
        try:
            while True:
                resp = self.client.get(self.url(f"Task/{tid}"), headers={"Accept": ig.FHIR_JSON})
                polls += 1
                task = _json(resp)
                if resp.status_code != 200 or not isinstance(task, dict):
                    raise _Failed(f"GET Task/{tid}: HTTP {resp.status_code}")
                if task.get("status") in ig.FINAL_STATES:
                    break
                if time.monotonic() > end:
                    raise _Failed(f"Task/{tid} still {task.get('status')} after {self.deadline:.0f} s")
                time.sleep(delay)
                delay = min(delay * 1.6, 2.0)
        except (_Failed, httpx.HTTPError) as exc:
            self.add(name, False, str(exc) or type(exc).__name__)
            return None
        status = task.get("status")
        reason = status_reason(task)
        self.add(name, status == "completed", f"Task/{tid} {status} after {polls} poll(s) {reason}")
        return task if status == "completed" else None

    def task_checks(self, label: str, tags: list[str], task: dict[str, Any]) -> None:
        tid = task.get("id")
        problems = []
        try:
            fhir_parse(task)
        except ValueError as exc:
            problems.append(str(exc))
        if task.get("intent") != "order":
            problems.append(f"intent={task.get('intent')}")
        if ("http://hl7.org/fhir/CodeSystem/task-code", "fulfill") not in [
            (c.get("system"), c.get("code")) for c in (task.get("code") or {}).get("coding") or []
        ]:
            problems.append("code is not task-code#fulfill")
        focus = (task.get("focus") or {}).get("reference") or ""
        if not focus.startswith("Binary/"):
            problems.append(f"focus={focus!r}, expected Binary/<id>")
        self.add(
            f"task profile{label}",
            not problems,
            "; ".join(problems) or f"Task/{tid} follows OrthovisionAITask",
        )

        inputs = [
            i
            for i in task.get("input") or []
            if "tagDICOM" in [c.get("code") for c in (i.get("type") or {}).get("coding") or []]
        ]
        outputs = task.get("output") or []
        n_in = len(inputs) if inputs else len(tags)
        self.add(
            f"input/output count{label}",
            len(outputs) == n_in == len(tags),
            f"{len(tags)} tag(s) asked, {len(inputs)} tagDICOM input(s), {len(outputs)} output(s)",
        )
        seen: list[str] = []
        for out in outputs:
            ref = ((out or {}).get("valueReference") or {}).get("reference") or ""
            self.observation(label, ref, seen)
        missing = [
            t for t in tags if normalise_tag(t) not in {normalise_tag(s) for s in seen} and t not in seen
        ]
        if outputs:
            self.add(
                f"observations answer the tags{label}",
                not missing,
                f"missing: {', '.join(missing)}" if missing else f"answered: {', '.join(seen)}",
            )

        device_ref = next(
            (
                e.get("valueReference", {}).get("reference")
                for e in task.get("extension") or []
                if e.get("url") == ig.EXT_PERFORMER_DEVICE
            ),
            None,
        )
        self.performer(label, device_ref)
        self.binary_cleanup(label, focus)

    def observation(self, label: str, ref: str, seen: list[str]) -> None:
        name = f"observation{label} {ref}"
        if not ref.startswith("Observation/"):
            self.add(name, False, f"output reference {ref!r} is not Observation/<id>")
            return
        try:
            resp = self.client.get(self.url(ref), headers={"Accept": ig.FHIR_JSON})
            obs = _json(resp)
            if resp.status_code != 200:
                raise _Failed(f"HTTP {resp.status_code}")
            fhir_parse(obs)
        except (_Failed, ValueError, httpx.HTTPError) as exc:
            self.add(name, False, str(exc) or type(exc).__name__)
            return
        problems = []
        if obs.get("status") != "final":
            problems.append(f"status={obs.get('status')}")
        cats = [c.get("code") for cc in obs.get("category") or [] for c in cc.get("coding") or []]
        if "imaging" not in cats:
            problems.append("category is not imaging")
        raw, _tag = observation_tag(obs)
        systems = [c.get("system") for c in (obs.get("code") or {}).get("coding") or []]
        if ig.CS_DICOM_TAGS not in systems:
            problems.append(f"code.coding has no {ig.CS_DICOM_TAGS} coding")
        if raw:
            seen.append(raw)
        if not any(k in obs for k in ("valueCodeableConcept", "valueString", "dataAbsentReason")):
            problems.append("no valueCodeableConcept/valueString")
        conf_ext = [e for e in obs.get("extension") or [] if e.get("url") == ig.EXT_CONFIDENCE]
        conf = observation_confidence(obs)
        if conf_ext and (conf is None or conf != float(conf_ext[0].get("valueDecimal", -1))):
            problems.append(f"confidence-score {conf_ext[0].get('valueDecimal')!r} outside 0..1")
        value = obs.get("valueString") or json.dumps(
            obs.get("valueCodeableConcept") or obs.get("dataAbsentReason")
        )
        self.add(name, not problems, "; ".join(problems) or f"{raw} = {value[:80]} (confidence {conf})")

    def performer(self, label: str, ref: str | None) -> None:
        name = f"performer device{label}"
        if not ref:
            self.add(name, None, "no performer-device extension (optional)")
            return
        try:
            resp = self.client.get(self.url(ref), headers={"Accept": ig.FHIR_JSON})
            dev = _json(resp)
            if resp.status_code != 200:
                raise _Failed(f"GET {ref}: HTTP {resp.status_code}")
            fhir_parse(dev)
            if dev.get("resourceType") != "Device":
                raise _Failed(f"{ref} is a {dev.get('resourceType')}")
        except (_Failed, ValueError, httpx.HTTPError) as exc:
            self.add(name, False, str(exc) or type(exc).__name__)
            return
        self.add(
            name,
            True,
            f"{ref}: {dev.get('displayName')} {(dev.get('version') or [{}])[0].get('value', '')}",
        )

    def binary_cleanup(self, label: str, focus: str) -> None:
        try:
            resp = self.client.get(self.url(focus), headers={"Accept": ig.FHIR_JSON})
        except httpx.HTTPError as exc:
            self.add(f"binary after completion{label}", False, str(exc))
            return
        self.add(
            f"binary after completion{label}",
            resp.status_code in (200, 410),
            f"GET {focus}: HTTP {resp.status_code} (200 kept or 410 Gone expected)",
        )

    def task_search(self) -> None:
        try:
            resp = self.client.get(
                self.url("Task"), params={"status": "completed"}, headers={"Accept": ig.FHIR_JSON}
            )
            body = _json(resp)
            if resp.status_code != 200:
                raise _Failed(f"HTTP {resp.status_code}")
            fhir_parse(body)
            if body.get("type") != "searchset":
                raise _Failed(f"Bundle.type={body.get('type')}")
            wrong = [
                e["resource"].get("status")
                for e in body.get("entry") or []
                if e.get("resource", {}).get("status") != "completed"
            ]
            if wrong:
                raise _Failed(f"search by status=completed returned status {wrong[0]}")
        except (_Failed, ValueError, httpx.HTTPError, KeyError) as exc:
            self.add("task search by status", False, str(exc) or type(exc).__name__)
            return
        self.add(
            "task search by status",
            True,
            f"searchset with {len(body.get('entry') or [])} completed Task(s)",
        )

    def unsupported_tag(self, good: str | None) -> None:
        tags = [UNSUPPORTED_TAG] if good is None else [good, UNSUPPORTED_TAG]
        try:
            resp = self.post(ig.submission_bundle(self.image, self.content_type, tags))
        except httpx.HTTPError as exc:
            self.add("error: unsupported tag", False, str(exc))
            return
        ok, ev = _outcome_evidence(resp)
        self.add(
            "error: unsupported tag",
            ok,
            ev
            if resp.status_code >= 400
            else f"accepted with HTTP {resp.status_code}; expected 4xx + OperationOutcome",
        )

    def malformed(self) -> None:
        cases: list[tuple[str, Any, bytes | None]] = []
        bad_focus = ig.submission_bundle(self.image, self.content_type, ["modality"])
        bad_focus["entry"][-1]["resource"]["focus"] = {"reference": ig.urn()}
        cases.append(("error: Task.focus not the Binary", bad_focus, None))
        no_binary = ig.submission_bundle(self.image, self.content_type, ["modality"])
        no_binary["entry"] = no_binary["entry"][1:]
        cases.append(("error: Bundle without Binary", no_binary, None))
        cases.append(("error: body not JSON", None, b'{"resourceType": "Bundle", '))
        for name, bundle, raw in cases:
            try:
                resp = self.post(bundle, raw=raw)
            except httpx.HTTPError as exc:
                self.add(name, False, str(exc))
                continue
            ok, ev = _outcome_evidence(resp)
            self.add(
                name,
                ok,
                ev
                if resp.status_code >= 400
                else f"accepted with HTTP {resp.status_code}; expected 400 + OperationOutcome",
            )


def run_conformance(
    base_url: str,
    *,
    client: httpx.Client | None = None,
    token: str | None = None,
    deadline: float = 60.0,
    timeout: float = 30.0,
    image: tuple[bytes, str] | None = None,
    post_path: str = "Bundle",
    verify: Any = True,
    progress: Callable[[Check], None] | None = None,
) -> Report:
    """Run every check against the service at `base_url` and return the report."""
    owned = client is None
    if client is None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(timeout=httpx.Timeout(timeout), headers=headers, verify=verify)
    try:
        return Conformance(
            base_url,
            client=client,
            deadline=deadline,
            image=image,
            post_path=post_path,
            progress=progress,
        ).run()
    finally:
        if owned:
            client.close()
