"""Reading a service's CapabilityStatement: the tags it classifies and whether it streams."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..labels.model import Tag, normalise_tag
from .ig import EXT_SUPPORTED_TAGS, EXT_TASK_EVENTS


@dataclass(frozen=True)
class SupportedTag:
    raw: str  # as the service spells it; what a Task's tagDICOM input must carry
    tag: Tag | None  # the seam tag, None when this project has no use for it
    description: str | None = None


@dataclass
class Capability:
    tags: list[SupportedTag] = field(default_factory=list)
    fhir_version: str | None = None
    software: str | None = None
    sse: bool = False

    def spelling(self, tag: Tag) -> str | None:
        """How to ask this service for `tag` (its own spelling), or None if unsupported."""
        return next((s.raw for s in self.tags if s.tag == tag), None)

    @property
    def seam_tags(self) -> list[Tag]:
        return [s.tag for s in self.tags if s.tag is not None]


def _extensions(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for ext in node.get("extension") or []:
            if isinstance(ext, dict):
                yield ext


def parse_capability(data: Any) -> Capability:
    """Both shapes of supported-dicom-tags: `valueString`, and the complex extension with
    `tagIdentifier` (+ `description`); found on the statement or on its `rest` entries."""
    if not isinstance(data, dict) or data.get("resourceType") != "CapabilityStatement":
        raise ValueError("not a CapabilityStatement")
    cap = Capability(fhir_version=data.get("fhirVersion"))
    software = data.get("software")
    if isinstance(software, dict):
        cap.software = " ".join(str(software[k]) for k in ("name", "version") if software.get(k))
    holders = [data, *[r for r in data.get("rest") or [] if isinstance(r, dict)]]
    seen: set[str] = set()
    for holder in holders:
        for ext in _extensions(holder):
            if ext.get("url") != EXT_SUPPORTED_TAGS:
                continue
            raw, description = ext.get("valueString"), None
            for sub in _extensions(ext):
                if sub.get("url") == "tagIdentifier":
                    raw = sub.get("valueString") or raw
                elif sub.get("url") == "description":
                    description = sub.get("valueString")
            if not isinstance(raw, str) or not raw.strip():
                continue
            raw = raw.strip()
            tag = normalise_tag(raw)
            key = tag or raw.lower()
            if key in seen:
                continue
            seen.add(key)
            cap.tags.append(SupportedTag(raw, tag, description))
    for rest in data.get("rest") or []:
        for res in (rest.get("resource") or []) if isinstance(rest, dict) else []:
            if isinstance(res, dict) and res.get("type") == "Task":
                cap.sse = any(e.get("url") == EXT_TASK_EVENTS for e in _extensions(res))
    return cap
