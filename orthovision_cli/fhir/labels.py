"""Between the labels seam and OrthovisionAIObservation values, both directions."""

from __future__ import annotations

from typing import Any

from ..labels.model import Code, Label, Orientation, Tag, normalise_tag
from .ig import CS_DICOM_TAGS, DCM, EXT_CONFIDENCE, SCHEME_SYSTEM, SYSTEM_SCHEME

MODALITY_NAMES = {
    "XC": "External-camera Photography",
    "DX": "Digital Radiography",
    "CR": "Computed Radiography",
    "IO": "Intra-oral Radiography",
    "PX": "Panoramic X-Ray",
    "CT": "Computed Tomography",
    "MG": "Mammography",
    "OT": "Other",
    "SC": "Secondary Capture",
}


def label_value(tag: Tag, label: Label | None) -> dict[str, Any]:
    """Keyword arguments for `ig.observation` that carry `label` (unknown: none)."""
    if label is None or not label.known:
        return {"confidence": label.confidence if label is not None else None}
    value = str(label.value)
    out: dict[str, Any] = {"confidence": label.confidence}
    if tag == "modality":
        code = value.upper()
        out["codings"] = [
            {
                "system": DCM,
                "code": code,
                "display": label.meaning or MODALITY_NAMES.get(code, code),
            }
        ]
        return out
    codings = [
        {"system": SCHEME_SYSTEM[c.scheme], "code": c.value, "display": c.meaning}
        for c in label.codes
        if c.scheme in SCHEME_SYSTEM
    ]
    if codings:
        out["codings"] = codings
        out["text"] = value
    else:
        out["value_string"] = value
    return out


def observation_tag(obs: dict[str, Any]) -> tuple[str | None, Tag | None]:
    """The tag an Observation answers: (as written, normalised)."""
    for c in (obs.get("code") or {}).get("coding") or []:
        if isinstance(c, dict) and c.get("code") and c.get("system") in (CS_DICOM_TAGS, None):
            return str(c["code"]), normalise_tag(str(c["code"]))
    for c in (obs.get("code") or {}).get("coding") or []:
        if isinstance(c, dict) and c.get("code"):
            return str(c["code"]), normalise_tag(str(c["code"]))
    return None, None


def observation_confidence(obs: dict[str, Any]) -> float | None:
    for ext in obs.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == EXT_CONFIDENCE:
            try:
                v = float(ext.get("valueDecimal"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return None
            return min(1.0, max(0.0, v))
    return None


def observation_value(obs: dict[str, Any], tag: Tag) -> tuple[str | None, tuple[Code, ...], str | None]:
    """(value, codes, meaning) of an Observation, for the given tag."""
    if isinstance(obs.get("valueString"), str):
        return obs["valueString"].strip() or None, (), None
    cc = obs.get("valueCodeableConcept")
    if not isinstance(cc, dict):
        return None, (), None
    codings = [c for c in cc.get("coding") or [] if isinstance(c, dict) and c.get("code")]
    codes = tuple(
        Code(str(c["code"]), SYSTEM_SCHEME[c["system"]], str(c.get("display") or ""))
        for c in codings
        if c.get("system") in SYSTEM_SCHEME
    )
    first = codings[0] if codings else {}
    if tag == "modality":
        value = str(first.get("code") or cc.get("text") or "").strip().upper() or None
        return value, codes, first.get("display")
    text = cc.get("text") or first.get("display") or first.get("code")
    return (str(text).strip() or None) if text else None, codes, first.get("display")


def normalise_orientation(value: str) -> str | None:
    try:
        return str(Orientation.parse(value))
    except ValueError:
        return None
