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
from . import rules
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
    "frontal_max_yaw": 0.2,  # |yaw| below: frontal (measured up to 0.08 on frontal faces)
    "profile_min_yaw": 0.45,  # |yaw| above: profile; between: three-quarter
    "unmeasured_cap": 0.5,  # profile / three-quarter are not validated: kept below review level
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
    features: np.ndarray | None = None


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
                out.append(
                    Labels(**{t: Label(t, None, 0.0, self.name, detail=detail) for t in TAGS})
                )
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
        else:
            w.mesh_flag = 1.0
        if w.mesh_flag < float(r["min_mesh_flag"]):
            return
        sure = face.score >= float(r["sure_score"]) and w.mesh_flag >= float(r["sure_mesh_flag"])
        w.face_conf = 0.95 if sure else 0.75

    def _heads_for(self, w: _Work, inputs: str) -> list[tuple[dict[str, Any], LinearHead]]:
        return [
            (spec, head)
            for spec, head in self.heads
            if spec.get("input", "features") == inputs
            and spec.get("applies_to", "any") in ("any", w.kind)
        ]

    def _wants_features(self, w: _Work) -> bool:
        # A head marked skip_when_face (the intraoral head) adds nothing once a face is sure.
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

    def _labels(self, w: _Work) -> Labels:
        heads = self._head_labels(w)
        if w.face_conf and w.face_conf < 0.95 and self._says_mouth(heads):
            # A doubtful face that the intraoral head contradicts: a face-like intraoral view.
            w.face_conf = 0.0
        sources: list[Labels] = [self._rule_labels(w)]
        if w.kind == rules.PHOTOGRAPH:
            sources.append(self._face_labels(w))
        sources.extend(heads)
        if self.use_hints:
            rel = getattr(w.image, "rel", "") or Path(getattr(w.image, "path", "")).name
            sources.append(self._consistent_hints(w, hint_labels(rel)))
        fused = fuse(sources)
        return self._finish(fused)

    @staticmethod
    def _says_mouth(heads: list[Labels]) -> bool:
        return any(
            (lab := h.get("body_part")) is not None
            and lab.value == "MOUTH"
            and lab.confidence >= 0.9
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
        if w.kind == rules.RADIOGRAPH:
            # Greyscale tells "radiograph", not which modality (CR, DX, PX, IO, a film scan).
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
        if abs(yaw) < float(r["frontal_max_yaw"]):
            if smile_p is None:
                protocol = Label("protocol", None, 0.0, src, detail={**detail, "pose": "frontal"})
            else:
                smiling = smile_p >= 0.5
                conf = w.face_conf * max(smile_p, 1.0 - smile_p)
                protocol = Label(
                    "protocol",
                    "EV19" if smiling else "EV15",
                    round(conf, 4),
                    src,
                    detail={**detail, "pose": "frontal"},
                )
        else:
            three_q = abs(yaw) < float(r["profile_min_yaw"])
            facing_right = yaw > 0
            smiling = smile_p is not None and smile_p >= 0.5
            code = TURNED_VIEWS[(three_q, facing_right, smiling)]
            pose = (
                f"{'three-quarter' if three_q else 'profile'} {'right' if facing_right else 'left'}"
            )
            # No profile or three-quarter photograph was available to validate these thresholds.
            conf = min(float(r["unmeasured_cap"]), w.face_conf)
            protocol = Label(
                "protocol", code, conf, src, detail={**detail, "pose": pose, "validated": False}
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

    def _head_labels(self, w: _Work) -> list[Labels]:
        out: list[Labels] = []
        if w.features is None:
            return out
        for spec, head in self._heads_for(w, "features"):
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
                Labels().with_label(
                    Label(tag, value, round(conf, 4), src, detail={"probabilities": probs})
                )
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
            Code(str(c["value"]), str(c["scheme"]), str(c["meaning"]))
            for c in entry.get("codes", [])
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
