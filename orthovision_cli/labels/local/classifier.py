"""`LocalClassifier`: every signal of a model pack, fused into one `Labels` per image.

Signals, each with its own confidence and source name:
- `local:rules`: colour statistics tell photograph (XC) from greyscale (radiograph) and drawings;
- `local:faces`: BlazeFace on the four rotations gives presence and the upright rotation, its
  keypoints the yaw, FaceMesh lip landmarks plus the `smile` head rest vs smile
  (`photo_labels`);
- `local:head:<name>`: linear heads on MobileNetV2 features (`feature_heads`): the intraoral
  head and view (`photo_labels`), the radiograph kinds and rotations (`radiograph_labels`);
- what a person taught (`orthovision train`): heads, shares of values and the film-or-digital
  fact, added to the fused evidence of the others afterwards (`taught`), never fused as peers;
- `local:hints`: file and folder names.
What none of them can tell stays unknown (value None) with a low confidence; contradictions
between them lower the winner's confidence (`consistency`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError, ModelPackError
from ..facts import RADIOGRAPHS, apply_radiographs, open_question
from ..fuse import fuse
from ..model import TAGS, Label, Labels
from . import pose as head_pose
from . import rules
from .body_pose import PoseModels
from .consistency import consistent_hints, finish, says_mouth, with_codes
from .faces import FaceModels, lip_features, mouth_features, rotate
from .feature_heads import FeatureHeads
from .heads import LinearHead
from .hints import hint_labels
from .packs import Pack, read_pack
from .photo_labels import DEFAULT_FACE_RULE, face_labels, intraoral_labels
from .radiograph_labels import radiograph_labels
from .runner import OnnxModel
from .taught import combine
from .work import PREVIEW_SIDE, SURE_FACE, Work

# A black-and-white photograph's XC: as sure as its face (SURE_FACE x 0.95 for a sure one).
GREY_PHOTO_CONFIDENCE = 0.95

__all__ = ["PREVIEW_SIDE", "LocalClassifier", "load_pack"]


class LocalClassifier:
    """The classifier of one pack. Cheap to pickle: sessions are made in each process on use."""

    def __init__(self, pack: Pack):
        self.pack = pack
        self.name = f"local:{pack.name}"
        self.colour_rule = {**rules.DEFAULT_COLOUR_RULE, **pack.rules.get("modality_colour", {})}
        self.face_rule = {**DEFAULT_FACE_RULE, **pack.rules.get("faces", {})}
        self.faces = self._face_models()
        self.pose = self._pose_models()
        self.features = self._features_model()
        self.heads: list[tuple[dict[str, Any], LinearHead]] = [
            (spec, LinearHead.load(pack.path_of(spec["file"]))) for spec in pack.heads
        ]
        self.bank = FeatureHeads(self.features, self.feature_size, self.heads)
        self.use_hints = bool(pack.rules.get("hints", True))
        # What a person taught besides heads: shares of values per kind of image, batch facts.
        self.taught: dict[str, Any] = dict(pack.manifest.get("taught", {}))

    # --- construction ---------------------------------------------------------------------

    def _face_models(self) -> FaceModels | None:
        det = self.pack.model("face_detector")
        if det is None:
            return None
        mesh = self.pack.model("face_mesh")
        expr = self.pack.model("face_expression")
        return FaceModels(
            OnnxModel(self.pack.path_of(det["file"]), det.get("input")),
            det,
            OnnxModel(self.pack.path_of(mesh["file"]), mesh.get("input")) if mesh else None,
            mesh,
            OnnxModel(self.pack.path_of(expr["file"]), expr.get("input")) if expr else None,
            expr,
        )

    def _pose_models(self) -> PoseModels | None:
        det, lm = self.pack.model("pose_detector"), self.pack.model("pose_landmarks")
        if det is None or lm is None:
            return None
        return PoseModels(
            OnnxModel(self.pack.path_of(det["file"]), det.get("input")),
            OnnxModel(self.pack.path_of(lm["file"]), lm.get("input")),
            lm,
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
        for w in self.bank.compute(works):
            self._settle_unsure(w)
        for w in works:
            if w.kind == rules.RADIOGRAPH:
                self._grey_photograph(w)
        results: list[Labels | InputError] = []
        for w in works:
            results.append(w.error if w.error is not None else self._labels(w))
        return results

    def _look(self, image: Any) -> Work:
        w = Work(image)
        try:
            w.rgb = image.preview(PREVIEW_SIDE)
        except InputError as exc:
            w.error = exc
            return w
        assert w.rgb is not None
        stats = rules.pixel_stats(w.rgb, self.colour_rule)
        w.stats = stats.as_dict()
        w.kind, w.kind_conf = rules.image_kind(stats, self.colour_rule)
        w.light_scan = w.kind == rules.RADIOGRAPH and rules.light_scan(asdict(stats), self.colour_rule)
        if w.kind == rules.PHOTOGRAPH and self.faces is not None:
            self._look_for_faces(w)
        return w

    def _grey_photograph(self, w: Work) -> None:
        """A greyscale picture with a face the landmark model confirms is a black-and-white
        photograph (an old archive's portraits), not a radiograph. The open radiographs at two
        turns: BlazeFace alone reaches 0.65 (a wrist film), the landmark model's face flag at
        most 0.11, below the 0.5 a face needs; greyscale copies of the open faces: docs/models.md.
        It costs every greyscale picture the detector's four runs (about 16 ms): a feature head
        fitted as a gate on greyscale copies of the open photographs let the one real
        black-and-white photograph here (the cameraman) through at P 0.007, so there is none."""
        if self.faces is None or self.faces.mesh is None:
            return
        # What the look leaves on a picture with no face is read on the photograph path only.
        self._look_for_faces(w)
        if w.face_conf > 0.0:
            w.kind, w.kind_conf = rules.PHOTOGRAPH, round(GREY_PHOTO_CONFIDENCE * w.face_conf, 4)
            w.greyscale = True

    def _settle_unsure(self, w: Work) -> None:
        """The colour rule was unsure (some colour, not a photograph's worth): the grey_photo
        head on the image features decides, and a photograph then gets its face look."""
        if w.kind != rules.UNSURE or w.features is None:
            return
        w.grey_p = self.bank.grey_probability(w)
        if w.grey_p is None:
            return
        if w.grey_p >= 0.5:
            w.kind, w.kind_conf = rules.RADIOGRAPH, round(0.9 * w.grey_p, 4)
        else:
            w.kind, w.kind_conf = rules.PHOTOGRAPH, round(0.9 * (1 - w.grey_p), 4)
            if self.faces is not None:
                self._look_for_faces(w)

    def _look_for_faces(self, w: Work) -> None:
        assert self.faces is not None and w.rgb is not None
        r = self.face_rule
        w.faces = self.faces.detect_rotations(w.rgb)
        scores = [f.score for f in w.faces]
        best = int(np.argmax(scores))
        w.rotation = best * 90
        face = w.faces[best]
        if face.score < float(r["min_score"]):
            return
        upright = rotate(w.rgb, w.rotation)
        if self.faces.mesh is not None:
            pts, w.mesh_flag = self.faces.landmarks(upright, face)
            w.lips = lip_features(pts)
            w.mouth = mouth_features(self.faces.crop(upright, face), pts)
            w.mesh_yaw = head_pose.mesh_degrees(pts)
        else:
            w.mesh_flag = 1.0
        if w.mesh_flag < float(r["min_mesh_flag"]):
            return
        w.smile_vote = self.faces.smile_vote(upright, face)  # a face the mesh confirmed only
        sure = face.score >= float(r["sure_score"]) and w.mesh_flag >= float(r["sure_mesh_flag"])
        w.face_conf = SURE_FACE if sure else 0.75
        turned = head_pose.degrees(face.yaw) >= head_pose.POSE_CHECK_DEGREES or (
            w.mesh_yaw is not None and abs(w.mesh_yaw) >= head_pose.POSE_CHECK_DEGREES
        )
        if turned:
            self._look_for_body(w, face_found=True)

    def _look_for_body(self, w: Work, face_found: bool) -> None:
        """BlazePose on the face's upright turn (and, with no face found, on the picture as
        stored too): keypoints that hold up to a full profile. Kept only when the detector and
        the landmark model agree a person is there and the body stands upright in that turn."""
        if self.pose is None:
            return
        assert w.rgb is not None
        # No face: BlazeFace's best turn first (its weak score still points the right way
        # more often than not), then the picture as stored.
        turns = [w.rotation] if face_found else list(dict.fromkeys([w.rotation, 0]))
        for turn in turns:
            upright = rotate(w.rgb, turn)
            found = self.pose.detect(upright)
            if found is None or found[0] < float(self.face_rule["pose_min_score"]):
                continue
            roi = self.pose.roi_from_detection(upright, found[1])
            if abs(roi[3]) > np.pi / 4:
                continue
            body = self.pose.run(upright, roi, found[0])
            if body.presence >= float(self.face_rule["pose_min_presence"]):
                w.body, w.body_rotation = body, turn
                return

    def _labels(self, w: Work) -> Labels:
        heads = self.bank.tag_labels(w)
        if w.face_conf and says_mouth(heads):
            # The intraoral head contradicts the face detector (lips and teeth can look like a
            # face: an intraoral photograph "found" a face at 0.72, real faces score 0.65-0.95).
            # A doubtful face is dropped; a sure one is halved, so that nothing the faces say
            # (HEAD, EV view, orientation) is written without a person's look.
            w.face_conf = 0.0 if w.face_conf < SURE_FACE else w.face_conf * 0.5
        if w.face_conf <= 0.0 and w.kind == rules.PHOTOGRAPH and w.faces and not says_mouth(heads):
            # No face found on a photograph that is not intraoral: often a full profile, which
            # BlazeFace misses; BlazePose looks for the person (never on an intraoral photograph,
            # whose lips and teeth are no person and whose time it would cost).
            self._look_for_body(w, face_found=False)
        sources: list[Labels] = [self._rule_labels(w)]
        if w.kind == rules.RADIOGRAPH:
            sources.append(radiograph_labels(w, self.bank))
        elif w.kind == rules.PHOTOGRAPH:
            # Before the faces: when neither knows the orientation, the intraoral head's note
            # ("kept as stored") is the unknown that is reported.
            sources.append(intraoral_labels(w, self.bank, heads))
            sources.append(face_labels(w, self.face_rule, self.bank.smile_probability(w)))
        sources.extend(heads)
        if self.use_hints:
            rel = getattr(w.image, "rel", "") or Path(getattr(w.image, "path", "")).name
            sources.append(consistent_hints(w, hint_labels(rel)))
        fused = finish(fuse(sources), self.pack.label_map)
        return self._with_taught(w, fused)

    def _with_taught(self, w: Work, fused: Labels) -> Labels:
        """What a person taught, added to the default evidence (`taught.combine`): the taught
        heads' votes, the taught rotation heads once the kind is known, the taught shares of
        values for this kind of image, and the taught film-or-digital fact (`labels.facts`)."""
        votes = self.bank.taught_votes(w)
        if not votes and not self.taught:
            return fused
        facts = self.taught.get("facts", {})
        fact = facts.get("radiographs")
        if fact in RADIOGRAPHS and open_question(fused):
            # Film or digital, answered for the decided files of the batch: a fact for the
            # files that do not state it, as `--radiographs` would be (which still overrides),
            # with the modality the decisions gave (CR, not the kind's DX).
            fused = apply_radiographs(fused, fact, "taught", facts.get("modality"))
        out = combine(fused, votes, self.taught.get("priors", {}).get(w.kind))
        rotation_votes = self.bank.kind_rotation(w, out)
        if rotation_votes:
            out = combine(out, rotation_votes)
        return with_codes(out, self.pack.label_map)

    def _rule_labels(self, w: Work) -> Labels:
        src = "local:rules"
        detail: dict[str, Any] = {"kind": w.kind, **w.stats}
        if w.kind == rules.PHOTOGRAPH:
            if w.greyscale:
                detail["note"] = "a greyscale picture with a face: a black-and-white photograph"
            return Labels(modality=Label("modality", "XC", w.kind_conf, src, detail=detail))
        if w.grey_p is not None:
            detail["grey_head_probability"] = round(w.grey_p, 4)
        if w.kind == rules.RADIOGRAPH:
            # Greyscale tells "radiograph", not which modality: the kind heads say that.
            detail["candidates"] = ["CR", "DX", "PX", "IO", "MG", "OT"]
            detail["kind_confidence"] = w.kind_conf
            return Labels(modality=Label("modality", None, 0.0, src, detail=detail))
        return Labels(modality=Label("modality", None, 0.0, src, detail=detail))


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
