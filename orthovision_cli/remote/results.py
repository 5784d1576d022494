"""Observations of a completed Task onto the labels seam, with provenance."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..fhir.labels import observation_confidence, observation_tag, observation_value
from ..labels.model import Label, Labels
from ..types import Code, Orientation
from ..vocab import terms as vocab
from ..vocab.ada1100 import View
from ..vocab.tags import Tag

# A service that states no confidence is trusted, but not as much as a person (1.0 would
# make its labels authoritative when fused with others).
DEFAULT_CONFIDENCE = 0.9


def _map_protocol(candidates: Iterable[str]) -> tuple[str, tuple[Code, ...], str] | None:
    for text in candidates:
        if not text:
            continue
        found = vocab.protocol(text)
        if found is None:
            # the IG's protocol codes are slugs: "frontal-facial" is "Frontal Facial"
            found = vocab.protocol(text.replace("-", " "))
        if found is None:
            continue
        if isinstance(found, View):
            codes = tuple(c for c in (found.precoordinated, found.view_code) if c is not None)
            return str(found.code), codes, str(found.meaning)
        codes = tuple(c for c in (found.procedure, found.view) if c is not None)
        return str(found.keyword), codes, str(found.meaning)
    return None


def _map_value(
    tag: Tag, value: str, codes: tuple[Code, ...], meaning: str | None, displays: list[str]
) -> tuple[str | None, tuple[Code, ...], str | None, str | None]:
    """(value, codes, meaning, note) in this project's vocabulary; note says what was kept."""
    if tag == "modality":
        v = value.strip().upper()
        try:
            code = vocab.modality_code(v)
        except KeyError:
            return v, codes, meaning, "modality not in this project's list"
        return v, (code,), code.meaning, None
    if tag == "protocol":
        mapped = _map_protocol([value, *displays])
        if mapped is not None:
            return mapped[0], mapped[1], mapped[2], None
        return value, codes, meaning, "kept as text"
    if tag == "body_part":
        for text in (value, *displays):
            try:
                part = vocab.body_part(text)
            except KeyError:
                continue
            return part.keyword, (part.code,), part.code.meaning, None
        return value, codes, meaning, "kept as text"
    try:
        return str(Orientation.parse(value)), (), None, None
    except ValueError:
        return None, (), None, f"not an orientation: {value!r}"


def labels_from_observations(
    observations: Iterable[Mapping[str, Any]], *, source: str, provenance: Mapping[str, Any]
) -> Labels:
    """Labels from OrthovisionAIObservations (unknown tags ignored, first answer per tag)."""
    labels = Labels()
    for obs in observations:
        raw, tag = observation_tag(dict(obs))
        if tag is None or labels.get(tag) is not None:
            continue
        conf = observation_confidence(dict(obs))
        detail: dict[str, Any] = {**provenance, "observation": obs.get("id"), "tag": raw}
        value, codes, meaning = observation_value(dict(obs), tag)
        if value is None:
            labels = labels.with_label(Label(tag, None, 0.0, source, detail=detail))
            continue
        cc = obs.get("valueCodeableConcept") or {}
        displays = [
            str(c.get(k))
            for c in cc.get("coding") or []
            if isinstance(c, dict)
            for k in ("display", "code")
            if c.get(k)
        ]
        mapped, mcodes, mmeaning, note = _map_value(tag, value, codes, meaning, displays)
        if note:
            detail["mapping"] = note
        if conf is None:
            detail["confidence"] = "not stated by the service"
        if mapped != value:
            detail["service_value"] = value
        label = Label(
            tag,
            mapped,
            conf if conf is not None else (DEFAULT_CONFIDENCE if mapped else 0.0),
            source,
            codes=mcodes,
            meaning=mmeaning,
            detail=detail,
        )
        labels = labels.with_label(label)
    return labels
