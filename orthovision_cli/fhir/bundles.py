"""Bundles and plain resources the reference service answers with (the client reads them with
`fhir.responses`): the transaction response to a submission, a Binary, an ImagingStudy."""

from __future__ import annotations

import base64
from typing import Any

from . import ig


def transaction_response(
    *,
    binary_id: str,
    study_id: str | None,
    task: dict[str, Any],
    task_url: str,
    last_modified: str,
) -> dict[str, Any]:
    """The answer to a POSTed OrthovisionAIBundle: one entry per resource created, in the order
    submitted (Binary, ImagingStudy when a modality was given, Task with the Task inlined)."""
    entries: list[dict[str, Any]] = [
        {"response": {"status": "201 Created", "location": f"Binary/{binary_id}/_history/1"}},
    ]
    if study_id:
        entries.append(
            {
                "response": {
                    "status": "201 Created",
                    "location": f"ImagingStudy/{study_id}/_history/1",
                }
            }
        )
    entries.append(
        {
            "fullUrl": task_url,
            "resource": task,
            "response": {
                "status": "201 Created",
                "location": f"Task/{task['id']}/_history/1",
                "lastModified": last_modified,
            },
        }
    )
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": entries}


def binary(binary_id: str, content_type: str, data: bytes) -> dict[str, Any]:
    return {
        "resourceType": "Binary",
        "id": binary_id,
        "contentType": content_type,
        "data": base64.b64encode(data).decode("ascii"),
    }


def imaging_study(study_id: str, modality: str | None) -> dict[str, Any]:
    """The submitted study, its subject masked (the IG's data-absent-reason)."""
    study: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": study_id,
        "status": "available",
        "subject": {"extension": [{"url": ig.EXT_DATA_ABSENT, "valueCode": "masked"}]},
    }
    if modality:
        study["modality"] = [{"coding": [{"system": ig.DCM, "code": modality}]}]
    return study
