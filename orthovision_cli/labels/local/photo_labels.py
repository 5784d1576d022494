"""Labels of a photograph: the face (orientation, HEAD, extraoral view: frontal at rest or
smiling, three-quarter and profile views from the head pose) and the intraoral view with the
rotation that shows it upright."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..model import Label, Labels, Orientation
from . import pose as head_pose
from .consistency import says_mouth
from .feature_heads import FeatureHeads, orientation_label
from .work import SURE_FACE, Work

DEFAULT_FACE_RULE: dict[str, Any] = {
    "min_score": 0.6,  # detector probability for "a face may be here"
    "sure_score": 0.7,  # ... and for "a face is here" when FaceMesh agrees
    "min_mesh_flag": 0.5,
    "sure_mesh_flag": 0.9,
    # Turned views rest on constructed geometry (labels.local.pose), not on photographs: their
    # confidence is scaled by this, so only a face far from every pose boundary passes review.
    "turned_cap": 0.9,
    "margin_gain": 3.0,  # orientation confidence: sigmoid(gain * logit margin best vs runner-up)
    # BlazePose (labels.local.body_pose) for turned faces and faces BlazeFace missed.
    "pose_min_score": 0.5,
    "pose_min_presence": 0.5,
    # A face only BlazePose found: its labels are proposed, never written without review.
    "body_only_conf": 0.75,
}

# (three-quarter?, subject faces the observer's right?, smile?) -> ADA-1100 view.
TURNED_VIEWS = {
    (False, True, False): "EV01",
    (False, True, True): "EV05",
    (False, False, False): "EV22",
    (False, False, True): "EV26",
    (True, True, False): "EV08",
    (True, True, True): "EV12",
    (True, False, False): "EV29",
    (True, False, True): "EV33",
}

# The intraoral view head's classes -> ADA-1100 view (the direct or mirror view the open
# examples show; labels.csv lists the family, e.g. IV24|IV25).
INTRAORAL_VIEWS = {
    "frontal": "IV07",
    "right_buccal": "IV01",
    "left_buccal": "IV18",
    "upper_occlusal": "IV24",
    "lower_occlusal": "IV26",
}
# A buccal view in a mirror shows the other side's layout.
MIRRORED_SIDES = frozenset({"right_buccal", "left_buccal"})


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def face_labels(w: Work, rule: dict[str, Any], smile_p: float | None) -> Labels:
    """Orientation, body part and extraoral view from the face found (`w.face_conf` > 0), or an
    unknown orientation with the detector's scores."""
    src = "local:faces"
    scores = [round(f.score, 4) for f in w.faces]
    if w.face_conf <= 0.0 and w.body is None:
        none = {"face_scores": scores, "mesh_flag": round(w.mesh_flag, 4)}
        return Labels(orientation=Label("orientation", None, 0.0, src, detail=none))
    if w.face_conf <= 0.0:
        return _body_only_labels(w, rule, smile_p, scores)
    face = w.faces[w.rotation // 90]
    ordered = sorted(scores, reverse=True)
    margin = _logit(ordered[0]) - _logit(ordered[1])
    orient_conf = w.face_conf * _sigmoid(float(rule["margin_gain"]) * margin)
    # A mirrored face looks like a face: the flip cannot be told from it and is never claimed.
    orientation = Label(
        "orientation",
        str(Orientation(w.rotation)),
        round(orient_conf, 4),
        src,
        detail={"face_scores": scores, "flip": "not assessed"},
    )
    body = Label("body_part", "HEAD", w.face_conf, src, detail={"face_score": scores[0]})
    yaw = face.yaw
    detail: dict[str, Any] = {"yaw": round(yaw, 4)}
    if smile_p is not None:
        detail["smile_probability"] = round(smile_p, 4)
    detail["yaw_degrees"] = round(head_pose.degrees(yaw), 1)
    if w.mesh_yaw is not None:
        detail["mesh_yaw_degrees"] = round(w.mesh_yaw, 1)
    if w.body is not None:
        face_deg = head_pose.degrees(yaw) * (1 if yaw > 0 else -1)
        name, facing_right, pose_conf, doubts = head_pose.body_view(w.body.yaw, w.body.cues(), face_deg)
        detail.update(_body_detail(w, doubts))
        basis = "BlazePose"
        if name == "profile" and abs(face_deg) < head_pose.FRONTAL_MAX_DEGREES:
            # The face detector sees a frontal face: a profile is never proposed on it.
            unknown = Label("protocol", None, 0.0, "local:faces", detail={**detail, "pose": "doubtful"})
            return Labels(protocol=unknown, body_part=body, orientation=orientation)
    else:
        name, pose_conf = head_pose.pose(yaw, w.mesh_yaw)
        facing_right = yaw > 0
        basis = "geometry"
    protocol = _protocol(name, facing_right, pose_conf, w.face_conf, smile_p, detail, rule, basis)
    return Labels(protocol=protocol, body_part=body, orientation=orientation)


def _body_detail(w: Work, doubts: list[str]) -> dict[str, Any]:
    assert w.body is not None
    cues = w.body.cues()
    return {
        "pose_yaw_degrees": round(w.body.yaw, 1),
        "pose_cues": {k: round(v, 3) for k, v in cues.items()},
        "pose_presence": round(w.body.presence, 4),
        **({"pose_doubts": doubts} if doubts else {}),
    }


def _body_only_labels(w: Work, rule: dict[str, Any], smile_p: float | None, scores: list[float]) -> Labels:
    """BlazeFace missed the face (often a full profile) and BlazePose found a person upright at
    `w.body_rotation`: every label is proposed for review (`body_only_conf`), none written."""
    assert w.body is not None
    src = "local:faces"
    cap = float(rule["body_only_conf"])
    orientation = Label(
        "orientation",
        str(Orientation(w.body_rotation)),
        cap,
        src,
        detail={"face_scores": scores, "found_by": "BlazePose", "flip": "not assessed"},
    )
    body = Label("body_part", "HEAD", cap, src, detail={"found_by": "BlazePose"})
    name, facing_right, pose_conf, doubts = head_pose.body_view(w.body.yaw, w.body.cues(), None)
    detail: dict[str, Any] = {"found_by": "BlazePose", **_body_detail(w, doubts)}
    if smile_p is not None:
        detail["smile_probability"] = round(smile_p, 4)
    protocol = _protocol(name, facing_right, pose_conf, cap, smile_p, detail, rule, "BlazePose")
    return Labels(protocol=protocol, body_part=body, orientation=orientation)


def _protocol(
    name: str,
    facing_right: bool,
    pose_conf: float,
    face_conf: float,
    smile_p: float | None,
    detail: dict[str, Any],
    rule: dict[str, Any],
    basis: str,
) -> Label:
    src = "local:faces"
    if name == "frontal":
        if smile_p is None:
            return Label("protocol", None, 0.0, src, detail={**detail, "pose": "frontal"})
        smiling = smile_p >= 0.5
        conf = face_conf * max(smile_p, 1.0 - smile_p) * pose_conf
        return Label(
            "protocol",
            "EV19" if smiling else "EV15",
            round(conf, 4),
            src,
            detail={**detail, "pose": "frontal", "basis": basis},
        )
    three_q = name == "three-quarter"
    # The smile head learnt frontal lips; a turned face narrows the mouth, so a smile is
    # claimed only when the head is sure, and rest (the usual series view) otherwise.
    smiling = smile_p is not None and smile_p >= 0.8
    code = TURNED_VIEWS[(three_q, facing_right, smiling)]
    pose = f"{name} {'right' if facing_right else 'left'}"
    # No openly licensed turned photograph to calibrate on: every turned view is scaled down, so
    # only one far from a boundary with every cue agreeing passes review.
    conf = face_conf * pose_conf * float(rule["turned_cap"])
    return Label("protocol", code, round(conf, 4), src, detail={**detail, "pose": pose, "basis": basis})


def intraoral_labels(w: Work, bank: FeatureHeads, heads: list[Labels]) -> Labels:
    """An intraoral photograph (the body-part head says MOUTH, no sure face): its view and
    the rotation that shows it upright."""
    if w.features is None or w.face_conf >= SURE_FACE or not says_mouth(heads):
        return Labels()
    turn, turn_p, turn_probs = bank.rotation(w, "intraoral_photo")
    out = Labels()
    if turn_probs:
        out = out.with_label(
            orientation_label(turn, turn_p, turn_probs, "local:head:rotation_intraoral_photo")
        )
    views = bank.applicable(w, "features", "intraoral_view")
    if not views:
        return out
    spec, head = views[0]
    # The view head knows upright pictures only: the turned-back picture is one of the
    # rotation head's looks (features of the picture turned by `turn`).
    feats = bank.looks(w)[turn // 90] if turn != 0 else w.features
    p = head.predict_proba(feats[None])[0]
    k = int(np.argmax(p))
    code = INTRAORAL_VIEWS.get(head.classes[k])
    probs = {c: round(float(q), 4) for c, q in zip(head.classes, p, strict=True)}
    conf = float(p[k]) * (turn_p if turn != 0 else 1.0)
    detail: dict[str, object] = {"view": head.classes[k], "probabilities": probs}
    if head.classes[k] in MIRRORED_SIDES:
        # A buccal view photographed in a mirror shows the other side's layout (IV02 vs
        # IV01): the side is a guess until a person looks.
        conf = min(conf, 0.75)
        detail["note"] = "a buccal side is capped at 0.75 (a mirror swaps sides): a person confirms it"
    source = f"local:head:{spec.get('name', 'intraoral_view')}"
    return out.with_label(Label("protocol", code, round(conf, 4), source, detail=detail))
