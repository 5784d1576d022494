"""The Orthovision AI IG's identifiers and resource builders (FHIR R5 JSON as dicts)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

IG_BASE = "http://medoco.health/fhir"
SD = f"{IG_BASE}/StructureDefinition"
CS = f"{IG_BASE}/CodeSystem"

EXT_SUPPORTED_TAGS = f"{SD}/supported-dicom-tags"
EXT_CONFIDENCE = f"{SD}/confidence-score"
EXT_PERFORMER_DEVICE = f"{SD}/performer-device"
# Not part of the IG (it fixes no SSE endpoint): how this project's server advertises that
# `GET Task/{id}` with `Accept: text/event-stream` streams the Task's updates.
EXT_TASK_EVENTS = "urn:orthovision-cli:fhir:task-event-stream"

PROFILE_BUNDLE = f"{SD}/orthovision-ai-bundle"
PROFILE_TASK = f"{SD}/orthovision-ai-task"
PROFILE_BINARY = f"{SD}/orthovision-ai-binary"
PROFILE_OBSERVATION = f"{SD}/orthovision-ai-observation"
PROFILE_MODEL = f"{SD}/orthovision-ai-model"

CS_DICOM_TAGS = f"{CS}/dicom-tags"
CS_ERRORS = f"{CS}/orthovision-ai-error-codes"
CS_PROTOCOL = f"{CS}/orthovision-ai-protocol-cs"
CS_TASK_INPUT = "http://hl7.org/fhir/task-input-type"
CS_TASK_OUTPUT = "http://hl7.org/fhir/task-output-type"
CS_TASK_CODE = "http://hl7.org/fhir/CodeSystem/task-code"
CS_OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CS_DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
EXT_DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
SCT = "http://snomed.info/sct"

FHIR_JSON = "application/fhir+json"
FINAL_STATES = frozenset({"completed", "failed", "cancelled", "rejected", "entered-in-error"})

# The IG's error code system (terminology.fsh) and the HTTP status each is answered with.
ERROR_STATUS: dict[str, int] = {
    "unsupported-image-format": 415,
    "image-too-large": 413,
    "corrupted-data": 400,
    "invalid-bundle": 400,
    "rate-limit-exceeded": 429,
    "service-unavailable": 503,
}

# Coding-scheme designators (DICOM) to FHIR system URIs and back.
SCHEME_SYSTEM = {"DCM": DCM, "SCT": SCT, "LN": "http://loinc.org"}
SYSTEM_SCHEME = {v: k for k, v in SCHEME_SYSTEM.items()}

# One IG name per seam tag, as a service advertises and a Task asks for it.
IG_TAG_NAMES = {
    "modality": "modality",
    "protocol": "protocol",
    "body_part": "body-part",
    "orientation": "orientation",
}


def new_id() -> str:
    return uuid.uuid4().hex


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def outcome(
    diagnostics: str,
    *,
    error_code: str | None = None,
    issue_code: str = "invalid",
    severity: str = "error",
) -> dict[str, Any]:
    """An OperationOutcome with one issue; `error_code` from the IG's error code system."""
    issue: dict[str, Any] = {"severity": severity, "code": issue_code, "diagnostics": diagnostics}
    if error_code:
        issue["details"] = {"coding": [{"system": CS_ERRORS, "code": error_code}]}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def capability_statement(
    tags: Mapping[str, str],
    *,
    software_version: str,
    complex_tags: bool = True,
    sse: bool = True,
    auth: bool = False,
) -> dict[str, Any]:
    """The service's CapabilityStatement; `tags` maps the IG tag name to a description.

    Both extension shapes are emitted when `complex_tags`: the workflow page's `valueString`
    form (what most clients read) and the FSH's complex `tagIdentifier` form.
    """
    ext: list[dict[str, Any]] = []
    for name in tags:
        ext.append({"url": EXT_SUPPORTED_TAGS, "valueString": name})
    if complex_tags:
        for name, description in tags.items():
            sub = [{"url": "tagIdentifier", "valueString": name}]
            if description:
                sub.append({"url": "description", "valueString": description})
            ext.append({"url": EXT_SUPPORTED_TAGS, "extension": sub})
    read = [{"code": "read"}]
    task: dict[str, Any] = {
        "type": "Task",
        "profile": PROFILE_TASK,
        "interaction": [{"code": "read"}, {"code": "search-type"}],
        "searchParam": [{"name": "status", "type": "token"}],
    }
    if sse:
        task["extension"] = [{"url": EXT_TASK_EVENTS, "valueCode": "text/event-stream"}]
    rest: dict[str, Any] = {
        "mode": "server",
        "documentation": "Asynchronous image classification (Orthovision AI IG 0.2.0).",
        "resource": [
            {"type": "Bundle", "profile": PROFILE_BUNDLE, "interaction": [{"code": "create"}]},
            task,
            {
                "type": "Observation",
                "profile": PROFILE_OBSERVATION,
                "interaction": [{"code": "read"}, {"code": "search-type"}],
                "searchParam": [{"name": "code", "type": "token"}],
            },
            {"type": "Binary", "profile": PROFILE_BINARY, "interaction": read},
            {"type": "Device", "profile": PROFILE_MODEL, "interaction": read},
        ],
        "interaction": [{"code": "transaction"}],
    }
    if auth:
        rest["security"] = {
            "service": [
                {
                    "coding": [
                        _coding(
                            "http://terminology.hl7.org/CodeSystem/restful-security-service",
                            "OAuth",
                        )
                    ],
                    "text": "Bearer token",
                }
            ],
            "description": "Send 'Authorization: Bearer <token>'.",
        }
    return {
        "resourceType": "CapabilityStatement",
        "id": "orthovision-ai-server",
        "extension": ext,
        "url": "urn:orthovision-cli:CapabilityStatement:orthovision-ai-server",
        "name": "OrthovisionCliReferenceService",
        "title": "orthovision-cli reference Orthovision AI service",
        "status": "active",
        "experimental": False,
        "date": now_iso(),
        "kind": "instance",
        "software": {"name": "orthovision-cli", "version": software_version},
        "implementation": {"description": "orthovision serve"},
        "fhirVersion": "5.0.0",
        "format": ["json"],
        "instantiates": [f"{IG_BASE}/CapabilityStatement/OrthovisionAICapabilityStatement"],
        "rest": [rest],
    }


def device(
    device_id: str, *, name: str, version: str, manufacturer: str = "orthovision-cli"
) -> dict[str, Any]:
    """The model as an OrthovisionAIModel Device."""
    return {
        "resourceType": "Device",
        "id": device_id,
        "meta": {"profile": [PROFILE_MODEL]},
        "status": "active",
        "manufacturer": manufacturer,
        "displayName": name,
        "name": [{"value": name, "type": "registered-name"}],
        "modelNumber": name,
        "version": [{"value": version}],
    }


def input_slice(code: str) -> dict[str, Any]:
    return {"coding": [{"system": CS_TASK_INPUT, "code": code}]}


def submission_bundle(
    image: bytes,
    content_type: str,
    tags: Sequence[str],
    *,
    modality: str | None = None,
) -> dict[str, Any]:
    """An OrthovisionAIBundle for one image: Binary + Task (+ ImagingStudy when the modality is
    known). Carries no patient data: the ImagingStudy's mandatory subject is marked `masked`."""
    binary_url, task_url = urn(), urn()
    inputs: list[dict[str, Any]] = [{"type": input_slice("tagDICOM"), "valueString": tag} for tag in tags]
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": binary_url,
            "resource": {
                "resourceType": "Binary",
                "meta": {"profile": [PROFILE_BINARY]},
                "contentType": content_type,
                "data": base64.b64encode(image).decode("ascii"),
            },
            "request": {"method": "POST", "url": "Binary"},
        }
    ]
    if modality:
        study_url = urn()
        entries.append(
            {
                "fullUrl": study_url,
                "resource": {
                    "resourceType": "ImagingStudy",
                    "status": "available",
                    "modality": [{"coding": [_coding(DCM, modality)]}],
                    # R5 makes subject 1..1; the IG's design sends no patient, so say so.
                    "subject": {"extension": [{"url": EXT_DATA_ABSENT, "valueCode": "masked"}]},
                },
                "request": {"method": "POST", "url": "ImagingStudy"},
            }
        )
        inputs.insert(0, {"type": input_slice("imagingStudy"), "valueReference": {"reference": study_url}})
    entries.append(
        {
            "fullUrl": task_url,
            "resource": {
                "resourceType": "Task",
                "meta": {"profile": [PROFILE_TASK]},
                "status": "requested",
                "intent": "order",
                "doNotPerform": False,
                "code": {"coding": [_coding(CS_TASK_CODE, "fulfill")]},
                "focus": {"reference": binary_url},
                "authoredOn": now_iso(),
                "input": inputs,
            },
            "request": {"method": "POST", "url": "Task"},
        }
    )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def observation(
    obs_id: str,
    tag: str,
    *,
    value_string: str | None = None,
    codings: Sequence[Mapping[str, str]] = (),
    text: str | None = None,
    confidence: float | None = None,
    device_id: str | None = None,
) -> dict[str, Any]:
    """An OrthovisionAIObservation for one tag (IG name); no value means data absent."""
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": obs_id,
        "meta": {"profile": [PROFILE_OBSERVATION]},
        "status": "final",
        "category": [{"coding": [_coding(CS_OBS_CATEGORY, "imaging")]}],
        "code": {"coding": [_coding(CS_DICOM_TAGS, tag)]},
        "issued": now_iso(),
    }
    if codings:
        cc: dict[str, Any] = {"coding": [dict(c) for c in codings]}
        if text:
            cc["text"] = text
        obs["valueCodeableConcept"] = cc
    elif value_string:
        obs["valueString"] = value_string
    else:
        obs["dataAbsentReason"] = {"coding": [_coding(CS_DATA_ABSENT, "unknown")]}
    if confidence is not None:
        obs["extension"] = [{"url": EXT_CONFIDENCE, "valueDecimal": round(float(confidence), 4)}]
    if device_id:
        obs["device"] = {"reference": f"Device/{device_id}"}
    return obs


def searchset(resources: Sequence[Mapping[str, Any]], base: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {
                "fullUrl": f"{base.rstrip('/')}/{r['resourceType']}/{r['id']}",
                "resource": dict(r),
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }
