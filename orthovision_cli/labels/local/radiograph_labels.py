"""Labels of a radiograph: the kind head (with the film's geometry) gives modality, protocol and
body part; the kind's rotation head the orientation; a lateral cephalogram's facing the Patient
Orientation (`labels.local.radiograph` holds the kinds and the rules that combine them)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..model import Label, Labels
from . import radiograph, rules
from .feature_heads import FeatureHeads, orientation_label
from .radiograph_geometry import acquisition, geometry
from .work import Work, read_header

# A picture the polarity head finds this likely to be a negative (bone dark: inverted data, a
# sensor program's negative view) keeps every label at most at POLARITY_CAP, below review (the
# decision's cap, as a cue that contradicts the kind does).
NEGATIVE_DOUBT = 0.9
POLARITY_CAP = 0.75


def radiograph_labels(w: Work, bank: FeatureHeads) -> Labels:
    """Kind -> modality, protocol, body part; the family's rotation head -> orientation."""
    found = bank.applicable(w, "features", "radiograph_kind")
    if not found or w.features is None or w.rgb is None:
        return Labels()
    spec, head = found[0]
    src = f"local:head:{spec.get('name', 'radiograph_kind')}"
    # The stored size and resolution (the film's physical size) only matter here.
    w.size, w.dpi, w.mode = read_header(getattr(w.image, "path", None))
    # The head learnt every film four ways: its answers on the picture's four turns (which the
    # rotation head looks at too) are steadier than the one on the picture as stored, and the
    # same however the film was stored.
    raw = head.predict_proba(np.stack(bank.looks(w))).mean(axis=0)
    calibration = radiograph.Calibration.from_spec(spec)
    # The rotation first (its family from the most likely kind; the symmetry of a picture not
    # yet upright says nothing), so that the symmetry is measured on the upright picture.
    stored = geometry(w.rgb, w.size, w.dpi)
    first = radiograph.calibrated(head.classes, raw, stored, calibration, symmetry_measured=False)
    family = radiograph.KINDS[head.classes[int(np.argmax(first))]].orientation_family
    turn, turn_p, turn_probs = bank.rotation(w, family)
    geo = stored.turned(turn)  # measured once: a turn only swaps the axes
    d = radiograph.decide(head.classes, raw, geo, calibration)
    kind = radiograph.KINDS[d.kind]
    grey = min(1.0, w.kind_conf / 0.9)  # a colour-cast image is a little less sure
    polarity: dict[str, Any] = {}
    negative_p = bank.negative_probability(w)
    if negative_p is not None:
        polarity = {"negative_p": round(negative_p, 4)}
    doubt = negative_p is not None and negative_p >= NEGATIVE_DOUBT
    if doubt:
        # The heads learnt positives only: what they read in a negative can be wrong and sure.
        d = d.capped_at(POLARITY_CAP)
        polarity["polarity_note"] = (
            "dark on light, as a negative (bone dark) or a document is: a person checks the labels"
        )
    conf, protocol_conf = d.confidence * grey, d.protocol_confidence * grey
    detail: dict[str, Any] = {"kind": d.kind, "probabilities": d.probabilities, **geo.as_dict(), **polarity}
    if d.cues:
        detail["cues"] = d.cues
    if radiograph.DISAGREE in d.cues.values():
        detail["note"] = "a scanner-independent cue contradicts the kind: " + ", ".join(
            c for c, v in d.cues.items() if v == radiograph.DISAGREE
        )
    intraoral_p = sum(d.probabilities.get(k, 0.0) for k in radiograph.INTRAORAL_KINDS)
    if d.kind == "chest":
        detail["note"] = "postero-anterior assumed: PA and AP are not told apart"
    # The reason a person is asked comes first.
    reasons = [rules.LIGHT_SCAN_NOTE] if w.light_scan else []
    reasons += [polarity["polarity_note"]] if doubt else []
    if reasons:
        detail["note"] = "; ".join(reasons)
    if d.kind == "ceph_lateral" and turn_probs:
        detail.update(bank.facing(w, turn))
    if kind.orientation_family != family:
        turn_probs = {}
    # Modality and body part are as sure as all the kinds that share them (a bitewing
    # taken for a periapical is still IO, JAW).
    mod_conf = d.capped(grey * radiograph.share(d.probabilities, "modality", kind.modality))
    body_conf = d.capped(grey * radiograph.share(d.probabilities, "body_part", kind.body_part))
    modality, mod_detail = kind.modality, detail
    if kind.film_modality:
        how = acquisition(w.size, w.dpi, w.mode)
        # The answer to film or digital for a batch (`labels.facts`): this kind's modality for
        # each, at the confidence of the kind family, without the cap below.
        either = {"film": kind.film_modality, "digital": kind.modality, "confidence": round(mod_conf, 4)}
        mod_detail = {**detail, "acquisition": how, "film_or_digital": either}
        if how == "film":
            modality = kind.film_modality
            mod_conf = d.capped(grey * radiograph.share(d.probabilities, "film_modality", modality))
        elif how == "unknown":
            mod_conf = min(mod_conf, radiograph.FILM_OR_DIGITAL_CAP)
            mod_detail["note"] = (
                f"a scanned film ({kind.film_modality}) or a digital radiograph ({kind.modality}): "
                "not told from the pixels; --radiographs film|digital settles it for a batch"
            )
        either["given"] = round(mod_conf, 4)  # what later steps (contradictions) start from
    body_detail: dict[str, Any] = {}
    if d.kind in radiograph.PART_NOT_TOLD:
        body_conf = min(body_conf, radiograph.PART_CAP)
        body_detail = {"note": radiograph.PART_NOT_TOLD[d.kind]}
    out = Labels(
        modality=Label("modality", modality, round(mod_conf, 4), src, detail=mod_detail),
        body_part=Label("body_part", kind.body_part, round(body_conf, 4), src, detail=body_detail),
    )
    protocol = (
        radiograph.intraoral_protocol(d.kind, geo) if d.kind in radiograph.INTRAORAL_KINDS else kind.protocol
    )
    if protocol:
        out = out.with_label(Label("protocol", protocol, round(protocol_conf, 4), src, detail=detail))
    if kind.orientation_family and turn_probs:
        source = f"local:head:rotation_{kind.orientation_family}"
        turn_conf = turn_p * min(1.0, conf / 0.9)
        if intraoral_p >= radiograph.INTRAORAL_ORIENTATION_DOUBT:
            # Possibly an intraoral film: a periapical's up and down are a convention (crowns
            # down for the maxilla), not something the pixels tell: a person decides.
            turn_conf = min(turn_conf, radiograph.INTRAORAL_PROTOCOL_CAP)
            turn_probs = {**turn_probs, "capped": radiograph.INTRAORAL_PROTOCOL_CAP}
        out = out.with_label(orientation_label(turn, d.capped(turn_conf), turn_probs, source))
    return out
