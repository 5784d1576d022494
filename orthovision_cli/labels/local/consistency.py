"""The last word on the fused labels: signals that contradict each other lower the confidence,
names that contradict the pixels are dropped, and each value gets its codes.

A contradiction never picks a winner here; it only makes the label doubtful, so that it goes to
a person (`--on-uncertain review`) instead of being written.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..model import Code, Label, Labels, Tag
from . import rules
from .work import Work

# A losing signal at least this sure of another value lowers the winner's confidence.
CONFLICT_MIN = 0.5
PHOTO_BODY_PARTS = frozenset({"HEAD", "FACE", "MOUTH"})


def says_mouth(heads: list[Labels]) -> bool:
    """The intraoral head is sure the image shows the inside of a mouth."""
    return any(
        (lab := h.get("body_part")) is not None and lab.value == "MOUTH" and lab.confidence >= 0.9
        for h in heads
    )


def consistent_hints(w: Work, hints: Labels) -> Labels:
    """Pixels beat names on the modality: no XC hint on a greyscale image or a drawing, no
    radiograph hint on a colour photograph."""
    lab = hints.modality
    if lab is None or not lab.known:
        return hints
    photo_hint = lab.value == "XC"
    drop = (
        w.kind == rules.DRAWING
        or (w.kind == rules.RADIOGRAPH and photo_hint)
        or (w.kind == rules.PHOTOGRAPH and not photo_hint)
    )
    return replace(hints, modality=None) if drop else hints


def finish(fused: Labels, label_map: dict[str, dict[str, Any]]) -> Labels:
    """Lower the confidence of labels another signal contradicts; attach codes (the pack's
    label map first, the code tables for values it does not list)."""
    out = fused
    for lab in fused:
        alts = lab.detail.get("alternatives", []) if lab.detail else []
        doubt = max((a["confidence"] for a in alts if a["value"] != lab.value), default=0.0)
        conf = lab.confidence
        if lab.known and doubt >= CONFLICT_MIN:
            conf = conf * (1.0 - 0.5 * doubt)
        conf *= view_body_conflict(lab, fused)
        conf *= kind_conflict(lab, fused)
        codes, meaning = codes_of(label_map, lab.tag, lab.value)
        out = out.with_label(
            replace(
                lab,
                confidence=round(conf, 4),
                codes=codes or lab.codes,
                meaning=meaning or lab.meaning,
            )
        )
    return out


def with_codes(labels: Labels, label_map: dict[str, dict[str, Any]]) -> Labels:
    """Codes for labels that have none yet (a value a taught head gave)."""
    out = labels
    for lab in labels:
        if lab.known and not lab.codes:
            codes, meaning = codes_of(label_map, lab.tag, lab.value)
            out = out.with_label(replace(lab, codes=codes, meaning=meaning or lab.meaning))
    return out


def codes_of(
    label_map: dict[str, dict[str, Any]], tag: Tag, value: str | None
) -> tuple[tuple[Code, ...], str | None]:
    if value is None:
        return (), None
    entry = label_map.get(tag, {}).get(value)
    if not entry:
        return vocab_codes(tag, value)
    codes = tuple(Code(str(c["value"]), str(c["scheme"]), str(c["meaning"])) for c in entry.get("codes", []))
    return codes, entry.get("meaning")


def view_body_conflict(lab: Label, labels: Labels) -> float:
    """Factor for an extraoral view (EV) on an image the body part calls MOUTH, or an intraoral
    view (IV) on a HEAD: one of the two signals is wrong, so the view is doubtful."""
    body = labels.body_part
    if lab.tag != "protocol" or not lab.value or body is None or not body.known:
        return 1.0
    clash = (lab.value.startswith("EV") and body.value == "MOUTH") or (
        lab.value.startswith("IV") and body.value == "HEAD"
    )
    return 1.0 - 0.5 * body.confidence if clash and body.confidence >= CONFLICT_MIN else 1.0


def kind_conflict(lab: Label, labels: Labels) -> float:
    """Factor for a label of a photograph on a radiograph or the other way round (a name saying
    OPG on a colour photograph, an EV code on a film): a photograph view (EV, IV) or a face or
    mouth against a radiograph modality, a radiograph protocol or body part against XC."""
    mod = labels.modality
    if lab.tag not in ("protocol", "body_part") or not lab.value or mod is None or not mod.known:
        return 1.0
    photo_value = lab.value[:2] in ("EV", "IV") if lab.tag == "protocol" else lab.value in PHOTO_BODY_PARTS
    clash = photo_value != (mod.value == "XC")
    return 1.0 - 0.5 * mod.confidence if clash and mod.confidence >= CONFLICT_MIN else 1.0


def vocab_codes(tag: Tag, value: str) -> tuple[tuple[Code, ...], str | None]:
    """Codes of a value the manifest does not list (e.g. an IV code from a file name)."""
    if tag != "protocol":
        return (), None
    try:
        from ...vocab import terms as vocab
    except ImportError:
        return (), None
    found = vocab.protocol(value)
    if found is None:
        return (), None
    if isinstance(found, vocab.Protocol):
        codes = tuple(c for c in (found.procedure, found.view) if c is not None)
    else:
        codes = tuple(c for c in (found.precoordinated, found.view_code) if c is not None)
    return codes, found.meaning
