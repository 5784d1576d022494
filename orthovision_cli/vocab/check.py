"""Label values checked against the vocabulary before anything is written (issue 21): from
options, manifests, a person's decisions and remote services alike.

`canonical_label` turns a value into the term the DICOM writer uses (a body part synonym into its
defined term, "teeth" -> JAW; "panoramic" -> PANORAMIC; "ev-08" -> EV08) or raises `LabelError`
naming the value and the nearest valid ones. `contradiction` says when a protocol cannot be
true together with the modality or body part (a panoramic radiograph of a face photograph).
`name_order_hint` says how DICOM orders a person's name when a value has no `^`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from ..errors import LabelError
from ..types import Orientation
from .ada1100 import View, all_views
from .terms import (
    Protocol,
    all_body_parts,
    all_radiograph_protocols,
    body_part,
    is_modality,
    normalise_phrase,
    protocol,
)

PHOTO_MODALITIES = frozenset({"XC", "ES", "GM", "SM", "OP"})
# Body parts a dental photograph can show (the ADA-1100 views: face, head, mouth, teeth).
PHOTO_BODY_PARTS = frozenset({"HEAD", "FACE", "HEADNECK", "MOUTH", "JAW", "TMJ"})
_MODALITIES = ("XC", "PX", "DX", "CR", "IO", "MG", "CT", "MR", "US", "OT", "ES", "GM", "SM", "OP")


def _nearest(value: str, choices: list[str], n: int = 3) -> str:
    key = value.strip().upper()
    by_upper = {c.upper(): c for c in choices}
    near = difflib.get_close_matches(key, list(by_upper), n=n, cutoff=0.5)
    if not near:  # e.g. a view code out of range: same letters, any number
        near = [c for c in by_upper if c[:2] == key[:2]][:n]
    return ", ".join(by_upper[c] for c in near) if near else ", ".join(choices[:n])


def _protocol_names() -> list[str]:
    return [v.code for v in all_views()] + [p.keyword for p in all_radiograph_protocols()]


def canonical_label(tag: str, value: str) -> str:
    """The vocabulary's term for `value` of label `tag`; LabelError naming the nearest valid ones."""
    text = str(value).strip()
    if tag == "orientation":
        try:
            return str(Orientation.parse(text))
        except ValueError as exc:
            raise LabelError(str(exc)) from exc
    if tag == "modality":
        upper = text.upper()
        if not is_modality(upper):
            near = _nearest(upper, list(_MODALITIES))
            raise LabelError(f"modality {text!r} is not a DICOM modality; nearest: {near}")
        return upper
    if tag == "body_part":
        try:
            return body_part(text).keyword
        except KeyError:
            names = [p.keyword for p in all_body_parts()]
            near = _nearest(normalise_phrase(text).replace(" ", ""), names)
            why = f"body part {text!r} is not a Body Part Examined term; nearest: {near}"
            raise LabelError(why) from None
    if tag == "protocol":
        found = protocol(text)
        if isinstance(found, View):
            return found.code
        if isinstance(found, Protocol):
            return found.keyword
        near = _nearest(text.replace("-", "").replace(" ", ""), _protocol_names())
        raise LabelError(
            f"protocol {text!r} is neither an ADA-1100 view (EV01-EV43, IV01-IV30) nor a "
            f"radiograph protocol; nearest: {near}"
        )
    return text


def contradiction(labels: Mapping[str, str | None]) -> str:
    """Why these label values cannot all be true of one image ("" when they can)."""
    proto = labels.get("protocol") or ""
    modality = (labels.get("modality") or "").upper()
    part = (labels.get("body_part") or "").upper()
    if not proto:
        return ""
    found = protocol(proto)
    if isinstance(found, Protocol):
        if modality in PHOTO_MODALITIES:
            usual = "/".join(found.modalities)
            kind = f"a radiograph ({usual})"
            return f"protocol {found.keyword} is {kind}, but the image is a photograph ({modality})"
        if part and part != found.body_part.keyword and part not in _related(found.body_part.keyword):
            return f"protocol {found.keyword} shows {found.body_part.keyword}, not {part}"
    elif isinstance(found, View):
        if modality and modality not in PHOTO_MODALITIES:
            return f"protocol {found.code} is a dental photograph view (XC), but the modality is {modality}"
        if part and part not in PHOTO_BODY_PARTS:
            return f"protocol {found.code} is a dental photograph view, but the body part is {part}"
    return ""


def _related(keyword: str) -> frozenset[str]:
    """Body parts that a radiograph of `keyword` may also be filed under."""
    groups = (
        frozenset({"JAW", "MOUTH", "HEAD", "SKULL", "FACE", "TMJ", "HEADNECK"}),
        frozenset({"HAND", "WRIST"}),
    )
    for g in groups:
        if keyword in g:
            return g
    return frozenset()


def name_order_hint(name: str) -> str:
    """A warning for a Patient's Name without `^` that looks like several words ("" otherwise)."""
    if "^" in name or " " not in name.strip():
        return ""
    parts = name.split()
    guess = f"{parts[0]}^{' '.join(parts[1:])}"
    return (
        f"Patient's Name {name!r} has no '^': DICOM orders a name Family^Given^Middle^Prefix^Suffix, "
        f"so a PACS shows all of it as the family name; if {parts[0]} is the family name: {guess!r}"
    )
