"""Checking resources against the IG's profiles: structure via `fhir.resources` (R5), then the
IG's own rules (OrthovisionAIBundle slices and invariants) by hand."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from .ig import CS_TASK_CODE, CS_TASK_INPUT

# Content types the reference service decodes, with the magic bytes that must open them.
IMAGE_MAGIC: dict[str, tuple[bytes, ...]] = {
    "image/jpeg": (b"\xff\xd8",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/tiff": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
    "image/jp2": (b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51"),
}


class BundleRejected(Exception):
    """A submission the IG says must be refused: carries the IG error code and HTTP status."""

    def __init__(
        self,
        diagnostics: str,
        *,
        error_code: str = "invalid-bundle",
        issue_code: str = "invalid",
        status: int = 400,
    ) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.error_code = error_code
        self.issue_code = issue_code
        self.status = status


@dataclass
class Submission:
    """What the service keeps of a valid OrthovisionAIBundle: pixels, tags, optional modality."""

    image: bytes
    content_type: str
    tags: list[str]  # as the client spelled them, in order
    modality: str | None = None
    authored_on: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def fhir_parse(resource: dict[str, Any]) -> Any:
    """Validate one resource (any type) with fhir.resources R5; raises ValueError with a short
    first-error message."""
    from fhir.resources import get_fhir_model_class
    from pydantic import ValidationError

    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    if not isinstance(rtype, str):
        raise ValueError("not a FHIR resource (no resourceType)")
    try:
        cls = get_fhir_model_class(rtype)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"unknown resourceType {rtype!r}") from exc
    try:
        return cls.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise ValueError(f"{rtype} is not valid FHIR R5: {loc}: {first.get('msg')}") from exc


def _codes(cc: Any) -> list[tuple[str | None, str | None]]:
    if not isinstance(cc, dict):
        return []
    return [(c.get("system"), c.get("code")) for c in cc.get("coding") or [] if isinstance(c, dict)]


def parse_submission(
    data: Any,
    *,
    supported: frozenset[str] | set[str],
    max_image_bytes: int,
    normalise: Any = None,
) -> Submission:
    """Check an OrthovisionAIBundle and return what to process; raises BundleRejected.

    `supported` holds the normalised tags the service classifies; `normalise` maps a client's
    spelling onto that form (default: identity).
    """
    norm = normalise or (lambda s: s)
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise BundleRejected("the body is not a FHIR Bundle")
    if data.get("type") != "transaction":
        raise BundleRejected(f"Bundle.type must be 'transaction', not {data.get('type')!r}")
    try:
        fhir_parse(data)
    except ValueError as exc:
        raise BundleRejected(str(exc)) from exc
    entries = data.get("entry") or []
    if not 2 <= len(entries) <= 3:
        raise BundleRejected(f"an OrthovisionAIBundle has 2 or 3 entries, not {len(entries)}")
    by_type: dict[str, list[dict[str, Any]]] = {}
    for i, entry in enumerate(entries):
        res = entry.get("resource") or {}
        rtype = res.get("resourceType")
        req = entry.get("request") or {}
        if req.get("method") != "POST" or req.get("url") != rtype:
            raise BundleRejected(f"entry {i}: request must be POST {rtype}")
        full = entry.get("fullUrl") or ""
        if not full.startswith("urn:uuid:"):
            raise BundleRejected(f"entry {i}: fullUrl must be a urn:uuid:")
        by_type.setdefault(str(rtype), []).append(entry)
    extra = set(by_type) - {"Binary", "Task", "ImagingStudy"}
    if extra:
        raise BundleRejected(f"unexpected resource types in the Bundle: {', '.join(sorted(extra))}")
    if len(by_type.get("Binary", [])) != 1 or len(by_type.get("Task", [])) != 1:
        raise BundleRejected("an OrthovisionAIBundle holds exactly one Binary and one Task")
    if len(by_type.get("ImagingStudy", [])) > 1:
        raise BundleRejected("an OrthovisionAIBundle holds at most one ImagingStudy")
    binary_entry, task_entry = by_type["Binary"][0], by_type["Task"][0]
    studies = by_type.get("ImagingStudy") or []
    study_entry = studies[0] if studies else None
    task = task_entry["resource"]

    # Task profile
    if task.get("status") != "requested":
        raise BundleRejected(f"Task.status must be 'requested', not {task.get('status')!r}")
    if task.get("intent") != "order":
        raise BundleRejected(f"Task.intent must be 'order', not {task.get('intent')!r}")
    if task.get("doNotPerform") is True:
        raise BundleRejected("Task.doNotPerform must be false")
    if (CS_TASK_CODE, "fulfill") not in _codes(task.get("code")):
        raise BundleRejected(f"Task.code must be {CS_TASK_CODE}#fulfill")
    focus = (task.get("focus") or {}).get("reference")
    if focus != binary_entry["fullUrl"]:
        raise BundleRejected("Task.focus must reference the Binary's fullUrl (bundle-task-references-binary)")
    tags: list[str] = []
    study_refs: list[str] = []
    for inp in task.get("input") or []:
        kinds = [code for system, code in _codes(inp.get("type")) if system == CS_TASK_INPUT]
        if "tagDICOM" in kinds:
            value = inp.get("valueString")
            if not isinstance(value, str) or not value.strip():
                raise BundleRejected("a tagDICOM input needs a valueString naming the tag")
            tags.append(value.strip())
        elif "imagingStudy" in kinds:
            study_refs.append(str((inp.get("valueReference") or {}).get("reference")))
    if not tags:
        raise BundleRejected("the Task asks for no tag: add at least one tagDICOM input")
    if len(study_refs) > 1:
        raise BundleRejected("at most one imagingStudy input")
    if study_refs and (study_entry is None or study_refs[0] != study_entry["fullUrl"]):
        raise BundleRejected("the imagingStudy input must reference the bundled ImagingStudy")
    unsupported = [t for t in tags if norm(t) not in supported]
    if unsupported:
        raise BundleRejected(
            f"unsupported DICOM tag(s): {', '.join(unsupported)}; see supported-dicom-tags in /metadata",
            issue_code="not-supported",
        )

    # Binary profile
    binary = binary_entry["resource"]
    ctype = str(binary.get("contentType") or "").split(";")[0].strip().lower()
    raw = binary.get("data")
    if not raw:
        raise BundleRejected("Binary.data is empty")
    if len(raw) * 3 // 4 > max_image_bytes:
        raise BundleRejected(
            f"image larger than {max_image_bytes} bytes", error_code="image-too-large", status=413
        )
    if ctype not in IMAGE_MAGIC:
        raise BundleRejected(
            f"only {', '.join(sorted(IMAGE_MAGIC))} images are supported; received {ctype or '?'}",
            error_code="unsupported-image-format",
        )
    try:
        image = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BundleRejected("Binary.data is not valid base64", error_code="corrupted-data") from exc
    if not image.startswith(IMAGE_MAGIC[ctype]):
        raise BundleRejected(f"Binary.data is not a {ctype} image", error_code="corrupted-data")

    modality = None
    if study_entry is not None:
        for cc in study_entry["resource"].get("modality") or []:
            for _system, code in _codes(cc):
                if code:
                    modality = code
                    break
    return Submission(image, ctype, tags, modality, task.get("authoredOn"))
