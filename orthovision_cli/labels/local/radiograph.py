"""Radiograph kinds: what a greyscale image is, and what that means for its DICOM labels.

A kind head (logistic regression on MobileNetV2 features, fitted on augmented open radiographs
turned four ways) gives per-kind probabilities, averaged over the film's four turns
(`radiograph_labels`), so they do not depend on how the film was stored.
Priors that need no training data, from how each kind is acquired, then reweigh them:

- aspect ratio (longer side / shorter side, so a turned film keeps it), per kind's film and
  detector formats (`ASPECT_CUES`);
- physical size, when the file states a believable resolution (at least 150 dpi; 72 and 96 dpi
  are software defaults): intraoral films at most 8.5 cm long, no extraoral film under 12 cm;
- left-right symmetry of the upright image tells a postero-anterior cephalogram (symmetric) from
  a lateral one (a profile is not), and a panoramic (symmetric) or a mammogram (one breast,
  about neither axis: no turn is claimed for it) from what they are not;
- a straight white band across the middle divides two views on one film (extremity films).

Each cue gives each kind a verdict (`cue_verdicts`): agrees, neutral or disagrees. The verdicts
reweigh the calibrated head (`Calibration`: a temperature per kind, fitted on sources the head
did not see), and a cue that disagrees with the kind, or with the head's own choice when it
overturned it, keeps the labels below the review threshold (`DISAGREE_CAP`).

Each kind maps onto modality, protocol (radiograph protocol keyword of `dicom.codes`) and body
part. What the pixels cannot settle goes to review rather than being guessed:

- film or digital (RG or DX) for the kinds that exist as both: a scan of a whole film is known
  by its stated scanner resolution and the film's size (8 x 10 in at 512 dpi is a 4096 x 5120
  scan), a 16-bit greyscale file by its depth (film scanners that write 16 bits state their
  resolution too); any other file (8-bit, greyscale or colour) may be either, and its modality
  is capped below the review threshold (`--modality` settles it for a whole batch);
- a hand (bone age) or a wrist film: the kind head learnt them as one kind;
- which part an extremity film shows (a hand film was called limb, sure, leave-one-source-out).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .heads import temper
from .radiograph_geometry import Geometry


@dataclass(frozen=True)
class Kind:
    modality: str
    protocol: str | None
    body_part: str
    orientation_family: str | None  # which rotation head turns it upright (None: not claimed)
    film_modality: str | None = None  # modality of a scanned film of this kind


KINDS: dict[str, Kind] = {
    "panoramic": Kind("PX", "PANORAMIC", "JAW", "panoramic"),
    "ceph_lateral": Kind("DX", "CEPH_LATERAL", "SKULL", "cephalogram", "RG"),
    "ceph_pa": Kind("DX", "CEPH_PA", "SKULL", "cephalogram", "RG"),
    "bitewing": Kind("IO", "BITEWING", "JAW", "intraoral_radiograph"),
    "periapical": Kind("IO", "PERIAPICAL", "JAW", "intraoral_radiograph"),
    "hand_wrist": Kind("DX", "HAND_WRIST", "HAND", "hand", "RG"),
    "limb": Kind("DX", None, "EXTREMITY", "limb", "RG"),
    "chest": Kind("DX", "CHEST_PA", "CHEST", "chest", "RG"),
    "mammogram": Kind("MG", None, "BREAST", None),
}

# Below the default review threshold (0.8): what the pixels cannot settle (module docstring).
FILM_OR_DIGITAL_CAP = 0.75
# The body part a kind cannot name: capped like the questions above, with the reason.
PART_NOT_TOLD: dict[str, str] = {
    "hand_wrist": "a hand (bone age) or a wrist film: not told apart; --body-part settles a folder of them",
    "limb": "an extremity film: which part (hand, knee...) is not told; --body-part settles a folder of them",
}
PART_CAP = 0.75
INTRAORAL_KINDS = frozenset({"bitewing", "periapical"})
INTRAORAL_PROTOCOL_CAP = 0.75
# An image at least this likely to be an intraoral film never has its turn written unreviewed.
INTRAORAL_ORIENTATION_DOUBT = 0.1
# An intraoral film whose stated size is that of an occlusal film (size 4, 57 x 76 mm) rather
# than a periapical or bitewing (22 x 35 to 31 x 41 mm; a size 3 bitewing 27 x 54 mm).
OCCLUSAL_MIN_CM = 6.2
SQUARE_KINDS = frozenset({"ceph_lateral", "ceph_pa", "chest", "mammogram", "hand_wrist"})
CEPHS = ("ceph_lateral", "ceph_pa")


# Scanner-independent cues, per kind: (agrees, disagrees) as predicates on the measured value.
# Physical size (longer side, cm, when the file states a believable resolution): intraoral
# films and sensors are 2-4 cm (size 0-2), 5.4 cm (size 3 bitewing), 7.6 cm (size 4 occlusal);
# cephalogram cassettes 20-30 cm, hand-wrist 18-24 cm, chest 35-43 cm: only the intraoral vs
# extraoral divide is trusted (journal figures and re-scans state odd resolutions).
INTRAORAL_MAX_CM = 8.5
EXTRAORAL_MIN_CM = 12.0
# Aspect (longer / shorter side, so a turned film keeps it): panoramic 1.8-2.6; cephalogram,
# chest and mammogram cassettes 1.0-1.35; a hand-wrist film 1.0-1.5 (one wrist: narrower);
# intraoral films 1.3-1.7 (a size 3 bitewing 2.0).
ASPECT_CUES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    # kind: ((agree from, to), (disagree below, above))
    "panoramic": ((1.7, 2.8), (1.45, 3.5)),
    "ceph_lateral": ((1.0, 1.45), (0.0, 1.75)),
    "ceph_pa": ((1.0, 1.45), (0.0, 1.75)),
    "chest": ((1.0, 1.45), (0.0, 1.75)),
    "mammogram": ((1.0, 1.6), (0.0, 2.0)),
    "hand_wrist": ((1.0, 1.6), (0.0, 3.2)),
    "bitewing": ((1.15, 2.2), (1.05, 2.6)),
    "periapical": ((1.15, 1.9), (1.05, 2.6)),
}
# Left-right symmetry of the upright picture: a panoramic is symmetric (0.7-0.95 on the open
# ones), a lateral cephalogram is a profile (at most 0.85), a PA cephalogram at least 0.9.
SYMMETRY_CUES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "panoramic": ((0.6, 1.0), (0.3, 1.1)),
    "ceph_lateral": ((-1.0, 0.85), (-1.1, 0.95)),
    "ceph_pa": ((0.9, 1.0), (0.6, 1.1)),
}
# One breast is symmetric about neither axis (no turn is claimed for a mammogram: the larger of
# the two; open ones: oblique <= 0.53, cranio-caudal 0.77-0.81); a PA film's 0.9 rules it out.
MAMMOGRAM_SYMMETRY_CUE = ((-1.0, 0.85), (-1.1, 0.9))
# Two views on one film are extremity films (hand-wrist, limb), never a skull, a chest, a
# panoramic, a mammogram or an intraoral film.
TWO_VIEWS_MIN_DIVIDER = 0.85
SINGLE_VIEW_KINDS = frozenset(
    {"ceph_lateral", "ceph_pa", "chest", "panoramic", "mammogram", "bitewing", "periapical"}
)
AGREE, NEUTRAL, DISAGREE = "agrees", "neutral", "disagrees"
# Likelihood factors of a cue's verdict (relative to agreeing).
VERDICT_FACTOR = {AGREE: 1.0, NEUTRAL: 0.5, DISAGREE: 0.05}


def _verdict(value: float, cue: tuple[tuple[float, float], tuple[float, float]]) -> str:
    (a_lo, a_hi), (d_lo, d_hi) = cue
    if a_lo <= value <= a_hi:
        return AGREE
    return DISAGREE if value < d_lo or value > d_hi else NEUTRAL


def cue_verdicts(kind: str, geo: Geometry, symmetry_measured: bool = True) -> dict[str, str]:
    """What the scanner-independent cues say about `kind` (a cue that says nothing is left out)."""
    out: dict[str, str] = {}
    if geo.long_cm is not None:
        small, large = geo.long_cm <= INTRAORAL_MAX_CM, geo.long_cm >= EXTRAORAL_MIN_CM
        if kind in INTRAORAL_KINDS:
            out["physical_size"] = AGREE if small else DISAGREE if large else NEUTRAL
        else:
            out["physical_size"] = AGREE if large else DISAGREE if small else NEUTRAL
    if kind in ASPECT_CUES:
        out["aspect"] = _verdict(geo.aspect, ASPECT_CUES[kind])
    if symmetry_measured and kind in SYMMETRY_CUES:
        out["symmetry"] = _verdict(geo.symmetry, SYMMETRY_CUES[kind])
    if symmetry_measured and kind == "mammogram":
        out["symmetry"] = _verdict(max(geo.symmetry, geo.symmetry_turned), MAMMOGRAM_SYMMETRY_CUE)
    if geo.divider >= TWO_VIEWS_MIN_DIVIDER and kind in SINGLE_VIEW_KINDS:
        out["two_views"] = DISAGREE
    return out


def prior_factors(classes: list[str], geo: Geometry, symmetry_measured: bool = True) -> np.ndarray:
    """Multiplicative prior per kind: the product of its cues' verdict factors."""
    f = np.ones(len(classes))
    for i, k in enumerate(classes):
        for verdict in cue_verdicts(k, geo, symmetry_measured).values():
            f[i] *= VERDICT_FACTOR[verdict]
    return f


@dataclass(frozen=True)
class Calibration:
    """How far to trust the kind head, per kind it names: a temperature fitted on sources the
    head did not see (models/tools/fit_heads.py: each source's films predicted by a head fitted
    without it; the temperature of a kind is the sharpest at which, on those predictions, at
    most 1 % of the labels that pass the default threshold are wrong). The ranking of a head
    holds on a new scanner better than its probabilities do; a kind whose left-out ranking
    was never wrong may be sharpened, one that was wrong is softened."""

    temperature: float = 1.0
    per_kind: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_spec(cls, spec: dict[str, object]) -> Calibration:
        per = spec.get("kind_temperatures") or {}
        assert isinstance(per, dict)
        t = spec.get("temperature", 1.0)
        assert isinstance(t, (int, float))
        return cls(float(t), tuple(sorted((str(k), float(v)) for k, v in per.items())))

    def temperature_for(self, kind: str) -> float:
        return dict(self.per_kind).get(kind, self.temperature)


def combine(
    classes: list[str], probs: np.ndarray, geo: Geometry, symmetry_measured: bool = True
) -> np.ndarray:
    """Head probabilities reweighed by the priors, renormalised."""
    p = np.asarray(probs, np.float64) * prior_factors(classes, geo, symmetry_measured)
    s = p.sum()
    return p / s if s > 0 else np.asarray(probs, np.float64)


def calibrated(
    classes: list[str],
    probs: np.ndarray,
    geo: Geometry,
    calibration: Calibration,
    symmetry_measured: bool = True,
) -> np.ndarray:
    """The head's probabilities with the priors, at the temperature of the kind they name."""
    first = combine(classes, probs, geo, symmetry_measured)
    t = calibration.temperature_for(classes[int(np.argmax(first))])
    return combine(classes, temper(probs, t), geo, symmetry_measured)


# Symmetry of the upright picture: lateral cephalograms measured 0.2-0.6, postero-anterior
# cephalograms and chests 0.8-0.95 on the open examples.
PA_MIN_SYMMETRY = 0.9
LATERAL_MAX_SYMMETRY = 0.85


def ceph_view(head_lateral: float, sym: float) -> tuple[str, float]:
    """(kind, confidence) for a cephalogram: the head's lateral probability checked against the
    symmetry of the upright picture; when they disagree, the confidence drops below review."""
    lateral = head_lateral >= 0.5
    if sym >= PA_MIN_SYMMETRY:
        return ("ceph_pa", 0.9) if not lateral else ("ceph_pa", 0.6)
    if sym <= LATERAL_MAX_SYMMETRY:
        return ("ceph_lateral", 0.95) if lateral else ("ceph_lateral", 0.6)
    return ("ceph_lateral" if lateral else "ceph_pa"), 0.55


# A cue that contradicts the kind (an intraoral-sized picture called a skull, a square one
# called a panoramic) keeps every label of the kind below the review threshold.
DISAGREE_CAP = 0.7


@dataclass(frozen=True)
class Decision:
    kind: str
    confidence: float  # of the kind family (modality, body part)
    protocol_confidence: float  # of the exact kind (lateral vs PA cephalogram)
    probabilities: dict[str, float]
    cues: dict[str, str] = field(default_factory=dict)  # cue -> agrees / neutral / disagrees
    cap: float = 1.0  # the most any label of this kind may claim

    def capped(self, confidence: float) -> float:
        return min(confidence, self.cap)

    def capped_at(self, cap: float) -> Decision:
        """The same decision with every label it gives at most `cap`."""
        cap = min(cap, self.cap)
        return replace(
            self,
            confidence=min(self.confidence, cap),
            protocol_confidence=min(self.protocol_confidence, cap),
            cap=cap,
        )


def decide(
    classes: list[str], probs: np.ndarray, geo: Geometry, calibration: Calibration | None = None
) -> Decision:
    """The kind from the head's probabilities (calibrated), the priors and (for cephalograms)
    the symmetry of the upright picture. `geo` must be measured on the upright picture."""
    p = calibrated(classes, probs, geo, calibration or Calibration())
    k = int(np.argmax(p))
    kind, conf = classes[k], float(p[k])
    proto_conf = conf
    if kind in CEPHS and all(c in classes for c in CEPHS):
        ceph_p = sum(float(p[classes.index(c)]) for c in CEPHS)
        lateral_p = float(p[classes.index("ceph_lateral")]) / max(1e-9, ceph_p)
        kind, view_conf = ceph_view(lateral_p, geo.symmetry)
        conf, proto_conf = ceph_p, ceph_p * view_conf
    if kind in INTRAORAL_KINDS:
        # Bitewing vs periapical rests on three open films (two bitewings, one periapical):
        # IO and JAW are sure, the protocol is not.
        proto_conf = min(proto_conf, INTRAORAL_PROTOCOL_CAP)
    probabilities = {c: round(float(q), 4) for c, q in zip(classes, p, strict=True)}
    cues = cue_verdicts(kind, geo)
    # A cue that overturns the head's own choice does not make the runner-up sure: the two
    # disagree, and a person decides.
    head_kind = classes[int(np.argmax(np.asarray(probs)))]
    if head_kind != kind and not (head_kind in CEPHS and kind in CEPHS):
        for cue, verdict in cue_verdicts(head_kind, geo).items():
            if verdict == DISAGREE:
                cues[f"{cue} ({head_kind})"] = DISAGREE
    cap = DISAGREE_CAP if DISAGREE in cues.values() else 1.0
    return Decision(kind, conf, proto_conf, probabilities, cues).capped_at(cap)


def share(probabilities: dict[str, float], attribute: str, value: str | None) -> float:
    """Total probability of the kinds whose `attribute` (modality, body_part) is `value`."""
    total = sum(q for k, q in probabilities.items() if getattr(KINDS[k], attribute) == value)
    return min(1.0, total)


def intraoral_protocol(kind: str, geo: Geometry) -> str:
    """The protocol of an intraoral film: the head's periapical or bitewing, or an occlusal
    radiograph when the stated size is an occlusal film's (the head learnt no occlusal film)."""
    if geo.long_cm is not None and OCCLUSAL_MIN_CM <= geo.long_cm <= INTRAORAL_MAX_CM:
        return "OCCLUSAL_RADIOGRAPH"
    return KINDS[kind].protocol or ""
