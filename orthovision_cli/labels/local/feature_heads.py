"""A pack's MobileNetV2 features and the linear heads on them.

Which heads apply to an image (its kind, the head's input and role), whether the features are
worth computing at all, the features of the picture's four turns (made once per image, shared by
every rotation head and the views that need the upright picture), and what the heads say.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..model import Label, Labels, Orientation, Tag
from . import rotation, rules
from .faces import rotate
from .heads import LinearHead, temper
from .runner import OnnxModel
from .taught import Vote, vote_of
from .work import SURE_FACE, Work, to_feature_input

Head = tuple[dict[str, Any], LinearHead]


def is_taught(spec: dict[str, Any]) -> bool:
    """A head a person taught (`orthovision train`); packs made before the flag name them user-*."""
    return bool(spec.get("taught")) or str(spec.get("name", "")).startswith("user-")


# The expression model is near 0 or 1 on most faces, and wrong on some faint smiles (005_08 of
# the London set: "neutral" at 1.00): its vote never counts for more than this.
SMILE_VOTE_CAP = 0.97
# A P(smile) within this of 0.5 leans neither way: it does not outvote a clear answer of the
# other model (the smile head gives 0.55 on a London face at rest the expression model reads
# as neutral at 0.99); it is joined with it as evidence instead.
SMILE_NO_OPINION = 0.1


def join_smile(head_p: float | None, vote: float | None) -> float | None:
    """P(smile) from the smile head's and the expression model's (`FeatureHeads.smile_probability`;
    `models/tools/fit_smile.py` measures it leave-one-person-out)."""
    if vote is None:
        return head_p
    vote = min(max(vote, 1.0 - SMILE_VOTE_CAP), SMILE_VOTE_CAP)
    if head_p is None:
        return vote
    if (head_p >= 0.5) == (vote >= 0.5):
        return max(head_p, vote) if vote >= 0.5 else min(head_p, vote)
    if min(abs(head_p - 0.5), abs(vote - 0.5)) > SMILE_NO_OPINION:
        return 0.5
    odds = head_p * vote / ((1.0 - head_p) * (1.0 - vote))
    return min(max(odds / (1.0 + odds), 1.0 - SMILE_VOTE_CAP), SMILE_VOTE_CAP)


class FeatureHeads:
    """The features model (None: the pack has none) and the heads of a pack."""

    def __init__(self, model: OnnxModel | None, size: int, heads: list[Head]):
        self.model = model
        self.size = size
        self.heads = heads

    def applicable(self, w: Work, inputs: str, role: str | None = None) -> list[Head]:
        return [
            (spec, head)
            for spec, head in self.heads
            if spec.get("input", "features") == inputs
            and spec.get("applies_to", "any") in ("any", w.kind)
            and (role is None or spec.get("role", "tag") == role)
        ]

    def wanted(self, w: Work) -> bool:
        if w.kind == rules.UNSURE:
            return any(spec.get("role") == "grey_photo" for spec, _ in self.heads)
        # A head marked skip_when_face adds nothing once a face is sure.
        return any(
            not (spec.get("skip_when_face") and w.face_conf >= SURE_FACE)
            for spec, _ in self.applicable(w, "features")
        )

    def compute(self, works: list[Work]) -> list[Work]:
        """Features of the images that want them, in one batch; returns those images."""
        if self.model is None:
            return []
        todo = [w for w in works if w.rgb is not None and self.wanted(w)]
        if not todo:
            return []
        batch = np.stack([to_feature_input(w.rgb, self.size) for w in todo if w.rgb is not None])
        (feats,) = self.model.run(batch, ["features"])
        for w, f in zip(todo, feats, strict=True):
            w.features = f
        return todo

    def grey_probability(self, w: Work) -> float | None:
        """The grey_photo head's P(greyscale) on the image's features; None without it."""
        if w.features is None:
            return None
        for spec, head in self.heads:
            if spec.get("role") == "grey_photo":
                p = head.predict_proba(w.features[None])[0]
                return float(p[head.classes.index("greyscale")])
        return None

    def negative_probability(self, w: Work) -> float | None:
        """The polarity head's P(negative: bone dark): the median over the picture's four turns
        (one odd look of the four does not decide); None without the head."""
        for _spec, head in self.applicable(w, "features", "radiograph_polarity"):
            p = head.predict_proba(np.stack(self.looks(w)))[:, head.classes.index("negative")]
            return float(np.median(p))
        return None

    def smile_probability(self, w: Work) -> float | None:
        """P(smile) of a frontal face: the smile head (mouth width, teeth shown) and the
        expression model (`w.smile_vote`, capped at SMILE_VOTE_CAP) together. Where both lean
        to the same side, the surer of the two; where each leans clearly to its own side, 0.5: a
        person decides. Where one leans neither way (within SMILE_NO_OPINION of 0.5), the two
        as independent evidence (their odds multiplied), kept within the cap. Either alone
        where the other is missing."""
        return join_smile(self._smile_head(w), w.smile_vote)

    def _smile_head(self, w: Work) -> float | None:
        for spec, head in self.heads:
            if spec.get("role") == "smile":
                x = w.mouth if spec.get("input") == "mouth" else w.lips
                if x is None:
                    return None
                # Softened by the temperature measured leave-one-person-out (fit_smile.py).
                p = temper(head.predict_proba(x[None])[0], float(spec.get("temperature", 1.0)))
                return float(p[head.classes.index("smile")])
        return None

    def looks(self, w: Work) -> list[np.ndarray]:
        """Features of the picture as stored and turned 90, 180, 270 degrees (made once)."""
        if w.looks is None:
            assert w.features is not None and w.rgb is not None and self.model is not None
            batch = np.stack([to_feature_input(rotate(w.rgb, t), self.size) for t in (90, 180, 270)])
            (feats,) = self.model.run(batch, ["features"])
            w.looks = [w.features, *feats]
        return w.looks

    def rotation(self, w: Work, family: str | None) -> tuple[int, float, dict[str, float]]:
        """(clockwise correction, probability, all probabilities) from the family's rotation
        head on the four turns of the picture (`rotation.joint`); (0, 0.0, {}) when there is
        none. A family whose head did not measure well enough is capped below review level
        (`max_confidence`); `orientation_label` then keeps quiet about "upright as stored"."""
        if family is None or w.features is None:
            return 0, 0.0, {}
        for spec, head in self.applicable(w, "features", "rotation"):
            if spec.get("family") != family:
                continue
            probs = [head.predict_proba(f[None])[0] for f in self.looks(w)]
            turn, p, table = rotation.joint(head.classes, probs)
            cap = float(spec.get("max_confidence", 1.0))
            if cap < 1.0:
                table = {**table, "capped": cap}
            return turn, min(p, cap), table
        return 0, 0.0, {}

    def kind_rotation(self, w: Work, fused: Labels) -> list[Vote]:
        """Votes of the rotation heads a user trained per kind (`when`: the tag value they
        belong to), once the labels say the image is of that kind; each as sure as that kind
        at most, and capped at what the head measured leave-one-out (`taught.combine` weighs
        them against the default orientation)."""
        votes: list[Vote] = []
        if w.features is None or w.rgb is None or self.model is None:
            return votes
        for spec, head in self.applicable(w, "features", "rotation"):
            when = spec.get("when")
            if not when or fused.value(when["tag"]) != when["value"]:
                continue
            kind_label = fused.get(when["tag"])
            assert kind_label is not None
            probs = [head.predict_proba(f[None])[0] for f in self.looks(w)]
            _, _, table = rotation.joint(head.classes, probs)
            classes = [str(Orientation(int(c))) for c in table]
            p = np.array([[table[c] for c in table]])
            vote = vote_of("orientation", classes, p, spec, f"local:head:{spec.get('name', 'rotation')}")
            scale = min(1.0, kind_label.confidence / 0.9)
            # A less sure kind pulls the vote towards even (it may not be this kind at all).
            even = 1.0 / len(classes)
            table2 = {c: even + scale * (q - even) for c, q in vote.probabilities.items()}
            votes.append(Vote("orientation", table2, vote.source))
        return votes

    def facing(self, w: Work, turn: int) -> dict[str, Any]:
        """Which way the upright lateral cephalogram faces, and the DICOM Patient Orientation
        (row, column directions) that says so: the film is recorded as taken, never flipped."""
        for _spec, head in self.applicable(w, "features", "ceph_facing"):
            upright = self.looks(w)[turn // 90]
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

    def taught_votes(self, w: Work) -> list[Vote]:
        """The calibrated votes of the tag heads a person taught (`taught.combine` weighs them
        against the default evidence)."""
        if w.features is None:
            return []
        out: list[Vote] = []
        for spec, head in self.applicable(w, "features", "tag"):
            if not is_taught(spec):
                continue
            p = head.predict_proba(w.features[None])
            src = f"local:head:{spec.get('name', spec['tag'])}"
            out.append(vote_of(spec["tag"], head.classes, p, spec, src))
        return out

    def tag_labels(self, w: Work) -> list[Labels]:
        """One Labels per tag head of the pack's own that applies (its probabilities in the
        detail); the taught heads vote separately (`taught_votes`)."""
        out: list[Labels] = []
        if w.features is None:
            return out
        for spec, head in self.applicable(w, "features", "tag"):
            if is_taught(spec):
                continue
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


def orientation_label(turn: int, conf: float, table: dict[str, float], source: str) -> Label:
    """The orientation label of a rotation head's answer. A capped (weak) head that sees
    nothing to turn says nothing: the picture stays as stored without a claimed label, so
    it neither goes to review for it nor carries a guess; a turn it proposes is reviewed."""
    detail: dict[str, Any] = {"probabilities": table, "flip": "not assessed"}
    if "capped" in table and turn == 0:
        detail["note"] = "kept as stored: this kind's rotation head is not sure enough to claim"
        return Label("orientation", None, 0.0, source, detail=detail)
    return Label("orientation", str(Orientation(turn)), round(conf, 4), source, detail=detail)
