"""`LocalClassifier`: every signal of a model pack, fused into one `Labels` per image.

Signals, each with its own confidence and source name:
- `local:rules`: colour statistics tell photograph (XC) from greyscale (radiograph) and drawings;
- `local:faces`: BlazeFace on the four rotations gives presence and the upright rotation, its
  keypoints the yaw, FaceMesh lip landmarks plus the `smile` head rest vs smile;
- `local:head:<name>`: linear heads on MobileNetV2 features (the default pack's intraoral head,
  heads a user trained with `orthovision train`);
- `local:hints`: file and folder names.
What none of them can tell stays unknown (value None) with a low confidence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import InputError, ModelPackError
from ..fuse import fuse
from ..model import TAGS, Code, Label, Labels, Orientation, Tag
from . import pose as head_pose
from . import radiograph, rotation, rules
from .faces import Face, FaceModels, lip_features
from .heads import LinearHead
from .hints import hint_labels
from .packs import Pack, read_pack
from .runner import OnnxModel

PREVIEW_SIDE = 384
# A losing signal at least this sure of another value lowers the winner's confidence.
CONFLICT_MIN = 0.5

DEFAULT_FACE_RULE: dict[str, Any] = {
    "min_score": 0.6,  # detector probability for "a face may be here"
    "sure_score": 0.7,  # ... and for "a face is here" when FaceMesh agrees
    "min_mesh_flag": 0.5,
    "sure_mesh_flag": 0.9,
    # Turned views rest on constructed geometry (labels.local.pose), not on photographs: their
    # confidence is scaled by this, so only a face far from every pose boundary passes review.
    "turned_cap": 0.9,
    "margin_gain": 3.0,  # orientation confidence: sigmoid(gain * logit margin best vs runner-up)
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


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@dataclass
class _Work:
    image: Any
    rgb: np.ndarray | None = None
    error: InputError | None = None
    kind: str = rules.UNSURE
    kind_conf: float = 0.0
    stats: dict[str, float] = field(default_factory=dict)
    faces: list[Face] = field(default_factory=list)
    face_conf: float = 0.0
    rotation: int = 0
    mesh_flag: float = 0.0
    lips: np.ndarray | None = None
    mesh_yaw: float | None = None  # degrees, from FaceMesh's 3D landmarks
    features: np.ndarray | None = None
    size: tuple[int, int] | None = None  # stored pixel size, from the file header
    dpi: float | None = None
    grey_p: float | None = None  # the grey_photo head's P(greyscale), when it was asked
    looks: list[np.ndarray] | None = None  # features of the picture turned 0, 90, 180, 270


class LocalClassifier:
    """The classifier of one pack. Cheap to pickle: sessions are made in each process on use."""

    def __init__(self, pack: Pack):
        self.pack = pack
        self.name = f"local:{pack.name}"
        self.colour_rule = {**rules.DEFAULT_COLOUR_RULE, **pack.rules.get("modality_colour", {})}
        self.face_rule = {**DEFAULT_FACE_RULE, **pack.rules.get("faces", {})}
        self.faces = self._face_models()
        self.features = self._features_model()
        self.heads: list[tuple[dict[str, Any], LinearHead]] = [
            (spec, LinearHead.load(pack.path_of(spec["file"]))) for spec in pack.heads
        ]
        self.use_hints = bool(pack.rules.get("hints", True))

    # --- construction ---------------------------------------------------------------------

    def _face_models(self) -> FaceModels | None:
        det = self.pack.model("face_detector")
        if det is None:
            return None
        mesh = self.pack.model("face_mesh")
        return FaceModels(
            OnnxModel(self.pack.path_of(det["file"]), det.get("input")),
            det,
            OnnxModel(self.pack.path_of(mesh["file"]), mesh.get("input")) if mesh else None,
            mesh,
        )

    def _features_model(self) -> OnnxModel | None:
        spec = self.pack.model("features")
        if spec is None:
            return None
        return OnnxModel(self.pack.path_of(spec["file"]), spec.get("input"), max_batch=16)

    @property
    def feature_size(self) -> int:
        spec = self.pack.model("features") or {}
        return int(spec.get("size", 224))

    # --- public ---------------------------------------------------------------------------

    def classify(self, image: Any) -> Labels:
        """Labels for one image; raises InputError when its preview cannot be decoded."""
        (result,) = self._classify_all([image])
        if isinstance(result, InputError):
            raise result
        return result

    def classify_many(self, images: Sequence[Any]) -> list[Labels]:
        """Labels for each image, in order; batched. An image whose preview cannot be decoded
        gets all tags unknown (confidence 0) with the reason in `detail["error"]`."""
        out: list[Labels] = []
        for result in self._classify_all(images):
            if isinstance(result, InputError):
                detail = {"error": result.one_line()}
                out.append(Labels(**{t: Label(t, None, 0.0, self.name, detail=detail) for t in TAGS}))
            else:
                out.append(result)
        return out

    # --- the work -------------------------------------------------------------------------

    def _classify_all(self, images: Sequence[Any]) -> list[Labels | InputError]:
        works = [self._look(im) for im in images]
        self._run_features(works)
        results: list[Labels | InputError] = []
        for w in works:
            results.append(w.error if w.error is not None else self._labels(w))
        return results

    def _look(self, image: Any) -> _Work:
        w = _Work(image)
        try:
            w.rgb = image.preview(PREVIEW_SIDE)
        except InputError as exc:
            w.error = exc
            return w
        assert w.rgb is not None
        stats = rules.pixel_stats(w.rgb, self.colour_rule)
        w.stats = stats.as_dict()
        w.kind, w.kind_conf = rules.image_kind(stats, self.colour_rule)
        if w.kind == rules.PHOTOGRAPH and self.faces is not None:
            self._look_for_faces(w)
        return w

    def _settle_unsure(self, w: _Work) -> None:
        """The colour rule was unsure (some colour, not a photograph's worth): the grey_photo
        head on the image features decides, and a photograph then gets its face look."""
        if w.kind != rules.UNSURE or w.features is None:
            return
        for spec, head in self.heads:
            if spec.get("role") != "grey_photo":
                continue
            p = head.predict_proba(w.features[None])[0]
            w.grey_p = float(p[head.classes.index("greyscale")])
            if w.grey_p >= 0.5:
                w.kind, w.kind_conf = rules.RADIOGRAPH, round(0.9 * w.grey_p, 4)
            else:
                w.kind, w.kind_conf = rules.PHOTOGRAPH, round(0.9 * (1 - w.grey_p), 4)
                if self.faces is not None:
                    self._look_for_faces(w)
            return

    def _look_for_faces(self, w: _Work) -> None:
        assert self.faces is not None and w.rgb is not None
        r = self.face_rule
        w.faces = self.faces.detect_rotations(w.rgb)
        scores = [f.score for f in w.faces]
        best = int(np.argmax(scores))
        w.rotation = best * 90
        face = w.faces[best]
        if face.score < float(r["min_score"]):
            return
        upright = _rotate(w.rgb, w.rotation)
        if self.faces.mesh is not None:
            pts, w.mesh_flag = self.faces.landmarks(upright, face)
            w.lips = lip_features(pts)
            w.mesh_yaw = head_pose.mesh_degrees(pts)
        else:
            w.mesh_flag = 1.0
        if w.mesh_flag < float(r["min_mesh_flag"]):
            return
        sure = face.score >= float(r["sure_score"]) and w.mesh_flag >= float(r["sure_mesh_flag"])
        w.face_conf = 0.95 if sure else 0.75

    def _heads_for(
        self, w: _Work, inputs: str, role: str | None = None
    ) -> list[tuple[dict[str, Any], LinearHead]]:
        return [
            (spec, head)
            for spec, head in self.heads
            if spec.get("input", "features") == inputs
            and spec.get("applies_to", "any") in ("any", w.kind)
            and (role is None or spec.get("role", "tag") == role)
        ]

    def _wants_features(self, w: _Work) -> bool:
        if w.kind == rules.UNSURE:
            return any(spec.get("role") == "grey_photo" for spec, _ in self.heads)
        # A head marked skip_when_face adds nothing once a face is sure.
        return any(
            not (spec.get("skip_when_face") and w.face_conf >= 0.95)
            for spec, _ in self._heads_for(w, "features")
        )

    def _run_features(self, works: list[_Work]) -> None:
        if self.features is None:
            return
        todo = [w for w in works if w.rgb is not None and self._wants_features(w)]
        if not todo:
            return
        size = self.feature_size
        batch = np.stack([to_feature_input(w.rgb, size) for w in todo if w.rgb is not None])
        (feats,) = self.features.run(batch, ["features"])
        for w, f in zip(todo, feats, strict=True):
            w.features = f
            self._settle_unsure(w)

    def _labels(self, w: _Work) -> Labels:
        heads = self._head_labels(w)
        if w.face_conf and self._says_mouth(heads):
            # The intraoral head contradicts the face detector (lips and teeth can look like a
            # face: an intraoral photograph "found" a face at 0.72, real faces score 0.65-0.95).
            # A doubtful face is dropped; a sure one is halved, so that nothing the faces say
            # (HEAD, EV view, orientation) is written without a person's look.
            w.face_conf = 0.0 if w.face_conf < 0.95 else w.face_conf * 0.5
        sources: list[Labels] = [self._rule_labels(w)]
        if w.kind == rules.RADIOGRAPH:
            sources.append(self._radiograph_labels(w))
        elif w.kind == rules.PHOTOGRAPH:
            # Before the faces: when neither knows the orientation, the intraoral head's note
            # ("kept as stored") is the unknown that is reported.
            sources.append(self._intraoral_labels(w, heads))
            sources.append(self._face_labels(w))
        sources.extend(heads)
        if self.use_hints:
            rel = getattr(w.image, "rel", "") or Path(getattr(w.image, "path", "")).name
            sources.append(self._consistent_hints(w, hint_labels(rel)))
        fused = self._kind_rotation(w, fuse(sources))
        return self._finish(fused)

    def _kind_rotation(self, w: _Work, fused: Labels) -> Labels:
        """Rotation heads a user trained per kind (`when`: the tag value they belong to): used
        once the fused labels say the image is of that kind."""
        if w.features is None or w.rgb is None or self.features is None:
            return fused
        for spec, head in self._heads_for(w, "features", "rotation"):
            when = spec.get("when")
            if not when or fused.value(when["tag"]) != when["value"]:
                continue
            kind_label = fused.get(when["tag"])
            assert kind_label is not None
            probs = [head.predict_proba(f[None])[0] for f in self._looks(w)]
            turn, p, table = rotation.joint(head.classes, probs)
            conf = round(p * min(1.0, kind_label.confidence / 0.9), 4)
            current = fused.orientation
            if current is None or not current.known or current.confidence < conf:
                label = Label(
                    "orientation",
                    str(Orientation(turn)),
                    conf,
                    f"local:head:{spec.get('name', 'rotation')}",
                    detail={"probabilities": table, "flip": "not assessed"},
                )
                fused = fused.with_label(label)
        return fused

    @staticmethod
    def _says_mouth(heads: list[Labels]) -> bool:
        return any(
            (lab := h.get("body_part")) is not None and lab.value == "MOUTH" and lab.confidence >= 0.9
            for h in heads
        )

    @staticmethod
    def _consistent_hints(w: _Work, hints: Labels) -> Labels:
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

    def _rule_labels(self, w: _Work) -> Labels:
        src = "local:rules"
        detail: dict[str, Any] = {"kind": w.kind, **w.stats}
        if w.kind == rules.PHOTOGRAPH:
            return Labels(modality=Label("modality", "XC", w.kind_conf, src, detail=detail))
        if w.grey_p is not None:
            detail["grey_head_probability"] = round(w.grey_p, 4)
        if w.kind == rules.RADIOGRAPH:
            # Greyscale tells "radiograph", not which modality: the kind heads say that.
            detail["candidates"] = ["CR", "DX", "PX", "IO", "MG", "OT"]
            detail["kind_confidence"] = w.kind_conf
            return Labels(modality=Label("modality", None, 0.0, src, detail=detail))
        return Labels(modality=Label("modality", None, 0.0, src, detail=detail))

    def _face_labels(self, w: _Work) -> Labels:
        src = "local:faces"
        r = self.face_rule
        scores = [round(f.score, 4) for f in w.faces]
        if w.face_conf <= 0.0:
            none = {"face_scores": scores, "mesh_flag": round(w.mesh_flag, 4)}
            return Labels(orientation=Label("orientation", None, 0.0, src, detail=none))
        face = w.faces[w.rotation // 90]
        ordered = sorted(scores, reverse=True)
        margin = _logit(ordered[0]) - _logit(ordered[1])
        orient_conf = w.face_conf * _sigmoid(float(r["margin_gain"]) * margin)
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
        smile_p = self._smile_probability(w)
        detail: dict[str, Any] = {"yaw": round(yaw, 4)}
        if smile_p is not None:
            detail["smile_probability"] = round(smile_p, 4)
        name, pose_conf = head_pose.pose(yaw, w.mesh_yaw)
        detail["yaw_degrees"] = round(head_pose.degrees(yaw), 1)
        if w.mesh_yaw is not None:
            detail["mesh_yaw_degrees"] = round(w.mesh_yaw, 1)
        if name == "frontal":
            if smile_p is None:
                protocol = Label("protocol", None, 0.0, src, detail={**detail, "pose": "frontal"})
            else:
                smiling = smile_p >= 0.5
                conf = w.face_conf * max(smile_p, 1.0 - smile_p) * pose_conf
                protocol = Label(
                    "protocol",
                    "EV19" if smiling else "EV15",
                    round(conf, 4),
                    src,
                    detail={**detail, "pose": "frontal"},
                )
        else:
            three_q = name == "three-quarter"
            facing_right = yaw > 0
            # The smile head learnt frontal lips; a turned face narrows the mouth, so a smile is
            # claimed only when the head is sure, and rest (the usual series view) otherwise.
            smiling = smile_p is not None and smile_p >= 0.8
            code = TURNED_VIEWS[(three_q, facing_right, smiling)]
            pose = f"{name} {'right' if facing_right else 'left'}"
            # Thresholds from constructed geometry (labels.local.pose), not from photographs.
            conf = w.face_conf * pose_conf * float(r["turned_cap"])
            protocol = Label(
                "protocol", code, round(conf, 4), src, detail={**detail, "pose": pose, "basis": "geometry"}
            )
        return Labels(protocol=protocol, body_part=body, orientation=orientation)

    def _smile_probability(self, w: _Work) -> float | None:
        if w.lips is None:
            return None
        for spec, head in self.heads:
            if spec.get("role") == "smile":
                p = head.predict_proba(w.lips[None])[0]
                return float(p[head.classes.index("smile")])
        return None

    def _looks(self, w: _Work) -> list[np.ndarray]:
        """Features of the picture as stored and turned 90, 180, 270 degrees (made once)."""
        if w.looks is None:
            assert w.features is not None and w.rgb is not None and self.features is not None
            size = self.feature_size
            batch = np.stack([to_feature_input(_rotate(w.rgb, t), size) for t in (90, 180, 270)])
            (feats,) = self.features.run(batch, ["features"])
            w.looks = [w.features, *feats]
        return w.looks

    def _rotation(self, w: _Work, family: str | None) -> tuple[int, float, dict[str, float]]:
        """(clockwise correction, probability, all probabilities) from the family's rotation
        head on the four turns of the picture (`rotation.joint`); (0, 0.0, {}) when there is
        none. A family whose head did not measure well enough is capped below review level
        (`max_confidence`); `_orientation` then keeps quiet about "upright as stored"."""
        if family is None or w.features is None:
            return 0, 0.0, {}
        for spec, head in self._heads_for(w, "features", "rotation"):
            if spec.get("family") != family:
                continue
            looks = self._looks(w)
            probs = [head.predict_proba(f[None])[0] for f in looks]
            turn, p, table = rotation.joint(head.classes, probs)
            cap = float(spec.get("max_confidence", 1.0))
            if cap < 1.0:
                table = {**table, "capped": cap}
            return turn, min(p, cap), table
        return 0, 0.0, {}

    @staticmethod
    def _orientation(turn: int, conf: float, table: dict[str, float], source: str) -> Label:
        """The orientation label of a rotation head's answer. A capped (weak) head that sees
        nothing to turn says nothing: the picture stays as stored without a claimed label, so
        it neither goes to review for it nor carries a guess; a turn it proposes is reviewed."""
        detail: dict[str, Any] = {"probabilities": table, "flip": "not assessed"}
        if "capped" in table and turn == 0:
            detail["note"] = "kept as stored: this kind's rotation head is not sure enough to claim"
            return Label("orientation", None, 0.0, source, detail=detail)
        return Label("orientation", str(Orientation(turn)), round(conf, 4), source, detail=detail)

    def _radiograph_labels(self, w: _Work) -> Labels:
        """Kind -> modality, protocol, body part; the family's rotation head -> orientation."""
        found = self._heads_for(w, "features", "radiograph_kind")
        if not found or w.features is None or w.rgb is None:
            return Labels()
        spec, head = found[0]
        src = f"local:head:{spec.get('name', 'radiograph_kind')}"
        # The stored size and resolution (the film's physical size) only matter here.
        w.size, w.dpi = _header(getattr(w.image, "path", None))
        raw = radiograph.temper(head.predict_proba(w.features[None])[0], float(spec.get("temperature", 1.0)))
        # The rotation first (its family from the most likely kind), so that the symmetry the
        # cephalogram view needs is measured on the upright picture.
        first = radiograph.combine(head.classes, raw, radiograph.geometry(w.rgb, w.size, w.dpi))
        family = radiograph.KINDS[head.classes[int(np.argmax(first))]].orientation_family
        turn, turn_p, turn_probs = self._rotation(w, family)
        geo = radiograph.geometry(_rotate(w.rgb, turn), w.size, w.dpi)
        d = radiograph.decide(head.classes, raw, geo)
        kind = radiograph.KINDS[d.kind]
        grey = min(1.0, w.kind_conf / 0.9)  # a colour-cast image is a little less sure
        conf, protocol_conf = d.confidence * grey, d.protocol_confidence * grey
        detail: dict[str, Any] = {"kind": d.kind, "probabilities": d.probabilities, **geo.as_dict()}
        if d.kind == "chest":
            detail["note"] = "postero-anterior assumed: PA and AP are not told apart"
        if d.kind == "ceph_lateral" and turn_probs:
            detail.update(self._facing(w, turn))
        if kind.orientation_family != family:
            turn_probs = {}
        # Modality and body part are as sure as all the kinds that share them (a bitewing
        # taken for a periapical is still IO, JAW).
        mod_conf = grey * radiograph.share(d.probabilities, "modality", kind.modality)
        body_conf = grey * radiograph.share(d.probabilities, "body_part", kind.body_part)
        out = Labels(
            modality=Label("modality", kind.modality, round(mod_conf, 4), src, detail=detail),
            body_part=Label("body_part", kind.body_part, round(body_conf, 4), src),
        )
        if kind.protocol:
            out = out.with_label(
                Label("protocol", kind.protocol, round(protocol_conf, 4), src, detail=detail)
            )
        if kind.orientation_family and turn_probs:
            source = f"local:head:rotation_{kind.orientation_family}"
            out = out.with_label(self._orientation(turn, turn_p * min(1.0, conf / 0.9), turn_probs, source))
        return out

    def _facing(self, w: _Work, turn: int) -> dict[str, Any]:
        """Which way the upright lateral cephalogram faces, and the DICOM Patient Orientation
        (row, column directions) that says so: the film is recorded as taken, never flipped."""
        for _spec, head in self._heads_for(w, "features", "ceph_facing"):
            upright = self._looks(w)[turn // 90]
            p = head.predict_proba(upright[None])[0]
            k = int(np.argmax(p))
            side = head.classes[k]
            return {
                "facing": side,
                "facing_confidence": round(float(p[k]), 4),
                # Facing right: the patient's anterior is toward the image's right, feet down.
                "patient_orientation": "A\\F" if side == "right" else "P\\F",
            }
        return {}

    def _intraoral_labels(self, w: _Work, heads: list[Labels]) -> Labels:
        """An intraoral photograph (the body-part head says MOUTH, no sure face): its view and
        the rotation that shows it upright."""
        if w.features is None or w.face_conf >= 0.95 or not self._says_mouth(heads):
            return Labels()
        turn, turn_p, turn_probs = self._rotation(w, "intraoral_photo")
        out = Labels()
        if turn_probs:
            out = out.with_label(
                self._orientation(turn, turn_p, turn_probs, "local:head:rotation_intraoral_photo")
            )
        views = self._heads_for(w, "features", "intraoral_view")
        if not views:
            return out
        spec, head = views[0]
        # The view head knows upright pictures only: the turned-back picture is one of the
        # rotation head's looks (features of the picture turned by `turn`).
        feats = self._looks(w)[turn // 90] if turn != 0 else w.features
        p = head.predict_proba(feats[None])[0]
        k = int(np.argmax(p))
        code = INTRAORAL_VIEWS.get(head.classes[k])
        probs = {c: round(float(q), 4) for c, q in zip(head.classes, p, strict=True)}
        conf = float(p[k]) * (turn_p if turn != 0 else 1.0)
        if head.classes[k] in MIRRORED_SIDES:
            # A buccal view photographed in a mirror shows the other side's layout (IV02 vs
            # IV01): the side is a guess until a person looks.
            conf = min(conf, 0.75)
        return out.with_label(
            Label(
                "protocol",
                code,
                round(conf, 4),
                f"local:head:{spec.get('name', 'intraoral_view')}",
                detail={"view": head.classes[k], "probabilities": probs},
            )
        )

    def _head_labels(self, w: _Work) -> list[Labels]:
        out: list[Labels] = []
        if w.features is None:
            return out
        for spec, head in self._heads_for(w, "features", "tag"):
            p = head.predict_proba(w.features[None])[0]
            k = int(np.argmax(p))
            tag: Tag = spec["tag"]
            value: str | None = head.classes[k]
            conf = float(p[k]) * float(spec.get("confidence_scale", 1.0))
            src = f"local:head:{spec.get('name', tag)}"
            if value in spec.get("abstain", []):
                value, conf = None, 0.0
            probs = {c: round(float(q), 4) for c, q in zip(head.classes, p, strict=True)}
            out.append(
                Labels().with_label(Label(tag, value, round(conf, 4), src, detail={"probabilities": probs}))
            )
        return out

    def _finish(self, fused: Labels) -> Labels:
        """Lower the confidence of labels another signal contradicts; attach codes."""
        out = fused
        for lab in fused:
            alts = lab.detail.get("alternatives", []) if lab.detail else []
            doubt = max((a["confidence"] for a in alts if a["value"] != lab.value), default=0.0)
            conf = lab.confidence
            if lab.known and doubt >= CONFLICT_MIN:
                conf = conf * (1.0 - 0.5 * doubt)
            conf *= _view_body_conflict(lab, fused)
            conf *= _kind_conflict(lab, fused)
            codes, meaning = self._codes(lab.tag, lab.value)
            out = out.with_label(
                replace(
                    lab,
                    confidence=round(conf, 4),
                    codes=codes or lab.codes,
                    meaning=meaning or lab.meaning,
                )
            )
        return out

    def _codes(self, tag: Tag, value: str | None) -> tuple[tuple[Code, ...], str | None]:
        if value is None:
            return (), None
        entry = self.pack.label_map.get(tag, {}).get(value)
        if not entry:
            return _vocab_codes(tag, value)
        codes = tuple(
            Code(str(c["value"]), str(c["scheme"]), str(c["meaning"])) for c in entry.get("codes", [])
        )
        return codes, entry.get("meaning")


def _view_body_conflict(lab: Label, labels: Labels) -> float:
    """Factor for an extraoral view (EV) on an image the body part calls MOUTH, or an intraoral
    view (IV) on a HEAD: one of the two signals is wrong, so the view is doubtful."""
    body = labels.body_part
    if lab.tag != "protocol" or not lab.value or body is None or not body.known:
        return 1.0
    clash = (lab.value.startswith("EV") and body.value == "MOUTH") or (
        lab.value.startswith("IV") and body.value == "HEAD"
    )
    return 1.0 - 0.5 * body.confidence if clash and body.confidence >= CONFLICT_MIN else 1.0


PHOTO_BODY_PARTS = frozenset({"HEAD", "FACE", "MOUTH"})


def _kind_conflict(lab: Label, labels: Labels) -> float:
    """Factor for a label of a photograph on a radiograph or the other way round (a name saying
    OPG on a colour photograph, an EV code on a film): a photograph view (EV, IV) or a face or
    mouth against a radiograph modality, a radiograph protocol or body part against XC."""
    mod = labels.modality
    if lab.tag not in ("protocol", "body_part") or not lab.value or mod is None or not mod.known:
        return 1.0
    photo_value = lab.value[:2] in ("EV", "IV") if lab.tag == "protocol" else lab.value in PHOTO_BODY_PARTS
    clash = photo_value != (mod.value == "XC")
    return 1.0 - 0.5 * mod.confidence if clash and mod.confidence >= CONFLICT_MIN else 1.0


def _vocab_codes(tag: Tag, value: str) -> tuple[tuple[Code, ...], str | None]:
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


# The intraoral view head's classes -> ADA-1100 view (the direct or mirror view the open
# examples show; labels.csv lists the family, e.g. IV24|IV25).
INTRAORAL_VIEWS = {
    "frontal": "IV07",
    "right_buccal": "IV01",
    "left_buccal": "IV18",
    "upper_occlusal": "IV24",
    "lower_occlusal": "IV26",
}


MIRRORED_SIDES = frozenset({"right_buccal", "left_buccal"})


def _header(path: Any) -> tuple[tuple[int, int] | None, float | None]:
    """Stored pixel size and resolution (dpi) from the file header; (None, None) if unknown."""
    if path is None:
        return None, None
    try:
        with Image.open(path) as im:
            dpi = im.info.get("dpi")
            res = float(dpi[0]) if dpi and float(dpi[0]) > 0 else None
            return (int(im.size[0]), int(im.size[1])), res
    except (OSError, ValueError, TypeError, IndexError, SyntaxError):
        return None, None


def _rotate(rgb: np.ndarray, clockwise: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(rgb, -(clockwise // 90) % 4))


def to_feature_input(rgb: np.ndarray, size: int) -> np.ndarray:
    """(3, size, size) float32 in 0..255: the whole picture squashed to a square (views are told
    by their layout, which a centre crop would cut)."""
    im = Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(im, np.float32).transpose(2, 0, 1)


_CACHE: dict[tuple[str, str], LocalClassifier] = {}


def load_pack(path: Path | None = None) -> LocalClassifier:
    """The classifier of the pack at `path` (None: the default pack, see `default_pack_path`).

    Checks every file against its sha256 (once per process); raises ModelPackError. Classifiers
    are cached per process, so a worker can call this for every batch.
    """
    pack = read_pack(path)
    key = (str(pack.root.resolve()), pack.version)
    clf = _CACHE.get(key)
    if clf is None or clf.pack.manifest != pack.manifest:
        try:
            clf = LocalClassifier(pack)
        except (OSError, KeyError, ValueError) as exc:
            raise ModelPackError(f"cannot load pack {pack.root}: {exc}", path=pack.root) from exc
        _CACHE[key] = clf
    return clf
