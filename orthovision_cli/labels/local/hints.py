"""File and folder name hints: practice software often names the view in the path.

Recognises ADA-1100 codes (`EV01`, `iv-24`) and words in English, German, French, Spanish,
Italian, Portuguese and Dutch. A hint is a guess with a stated confidence, never authoritative:
the fused label keeps `local:hints` as its source so a report shows where it came from.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import PurePath

from ..model import Label, Labels, Tag

SOURCE = "local:hints"

_CODE = re.compile(r"(?<![a-z0-9])(ev|iv)[-_ ]?(\d{2})(?![0-9])")


def _words(*alternatives: str) -> re.Pattern[str]:
    # Whole tokens only: `re` must not match inside `retake`, nor `45` inside `IMG_0045`.
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(alternatives) + r")(?![a-z0-9])")


# Stems match whole words or word starts (`panoram` matches panoramic, panoramica, ...).
PANO = _words(r"pano\w*", r"opg", r"orthopantomo\w*", r"ortopantomo\w*", r"dpt", r"panoram\w*")
CEPH = _words(
    r"ceph\w*",
    r"cefalo\w*",
    r"kephalo\w*",
    r"c[eé]phalo\w*",
    r"fr[sö]",
    r"fernr[oö]ntgen\w*",
    r"t[eé]l[eé]radio\w*",
    r"telerradio\w*",
    r"teleradio\w*",
    r"lat[-_ ]?ceph",
)
LATERAL = _words(r"lat", r"lateral\w*", r"seitlich\w*", r"seit\w*", r"profil\w*")
POSTERO_ANTERIOR = _words(r"pa", r"ap", r"frontal\w*", r"postero[-_ ]?anterior")
BITEWING = _words(r"bitewing\w*", r"bite[-_ ]wing\w*", r"bissfl[uü]gel\w*", r"bw")
PERIAPICAL = _words(
    r"periapi\w*",
    r"zahnfilm\w*",
    r"r[eé]tro[-_ ]?alv[eé]olaire\w*",
    r"endoral\w*",
)
PROFILE = _words(r"profil\w*", r"perfil\w*", r"profilo", r"seitenprofil\w*")
THREE_QUARTER = _words(
    r"3[-_ ]?4",
    r"three[-_ ]?quarter\w*",
    r"45",
    r"oblique\w*",
    r"halbprofil\w*",
    r"trois[-_ ]quarts?",
    r"tres[-_ ]cuartos",
    r"semiprofil\w*",
)
SMILE = _words(
    r"smil\w*",
    r"l[aä]ch\w*",
    r"sourire\w*",
    r"sonris\w*",
    r"sorris\w*",
    r"sorriso",
    r"glimlach\w*",
    r"lach\w*",
)
REST = _words(r"rest\w*", r"relax\w*", r"ruhe\w*", r"repos\w*", r"reposo", r"riposo", r"rust")
FACE = _words(
    r"face",
    r"en[-_ ]?face",
    r"gesicht\w*",
    r"visage",
    r"cara",
    r"viso",
    r"rosto",
    r"gezicht",
    r"extraoral\w*",
    r"extra[-_ ]oral\w*",
    r"eo",
)
INTRAORAL = _words(
    r"intraoral\w*",
    r"intra[-_ ]?oral\w*",
    r"io",
    r"okklusal\w*",
    r"occlusal\w*",
    r"oclusal\w*",
    r"occlusale?",
    r"bukkal\w*",
    r"buccal\w*",
    r"bucal\w*",
    r"vestibul\w*",
    r"aufbiss\w*",
)
LEFT = _words(r"left", r"links", r"li", r"gauche", r"izquierd\w*", r"sinistr\w*", r"esquerd\w*")
RIGHT = _words(r"right", r"rechts", r"re", r"droite?", r"derech\w*", r"destr\w*", r"direit\w*")


@dataclass(frozen=True)
class Hint:
    tag: Tag
    value: str
    confidence: float
    why: str


def normalise(text: str) -> str:
    """Lower case, accents kept for the patterns that spell them, separators as spaces."""
    t = unicodedata.normalize("NFC", text).lower()
    return re.sub(r"[\s_.\-/\\,;()\[\]]+", " ", t)


def name_hints(rel_path: str | PurePath) -> list[Hint]:
    """Hints from a path below the input root (folders and file name, extension dropped)."""
    p = PurePath(rel_path)
    text = normalise(" ".join([*p.parent.parts, p.stem]))
    out: list[Hint] = []
    # The last code wins: the file name is more specific than its folders.
    m = next(reversed(list(_CODE.finditer(text))), None)
    if m is not None:
        code = f"{m.group(1).upper()}{m.group(2)}"
        out.append(Hint("protocol", code, 0.95, f"ADA-1100 code {code!r} in the name"))
        out.append(Hint("modality", "XC", 0.9, "ADA-1100 photographic view code in the name"))
        out.append(Hint("body_part", "HEAD" if code.startswith("EV") else "MOUTH", 0.9, code))
        return out

    if PANO.search(text):
        out += [
            Hint("protocol", "PANORAMIC", 0.9, "panoramic word in the name"),
            Hint("modality", "PX", 0.85, "panoramic radiographs are modality PX"),
            Hint("body_part", "JAW", 0.8, "panoramic"),
        ]
        return out
    if CEPH.search(text):
        if POSTERO_ANTERIOR.search(text):
            out.append(Hint("protocol", "CEPH_PA", 0.85, "cephalogram, postero-anterior"))
        elif LATERAL.search(text):
            out.append(Hint("protocol", "CEPH_LATERAL", 0.85, "cephalogram, lateral"))
        else:
            # Most cephalograms are lateral, but the name does not say so: below review level.
            out.append(Hint("protocol", "CEPH_LATERAL", 0.6, "cephalogram, projection not named"))
        out.append(Hint("body_part", "SKULL", 0.7, "cephalogram"))
        return out
    if BITEWING.search(text):
        out += [
            Hint("protocol", "BITEWING", 0.85, "bitewing word in the name"),
            Hint("modality", "IO", 0.85, "intraoral radiograph"),
            Hint("body_part", "JAW", 0.7, "bitewing"),
        ]
        return out
    if PERIAPICAL.search(text):
        out += [
            Hint("protocol", "PERIAPICAL", 0.8, "periapical word in the name"),
            Hint("modality", "IO", 0.8, "intraoral radiograph"),
            Hint("body_part", "JAW", 0.7, "periapical"),
        ]
        return out

    if INTRAORAL.search(text):
        out += [
            Hint("body_part", "MOUTH", 0.8, "intraoral word in the name"),
            Hint("modality", "XC", 0.7, "intraoral photograph"),
        ]
        return out

    smile = bool(SMILE.search(text))
    left, right = bool(LEFT.search(text)), bool(RIGHT.search(text))
    side = "right" if right and not left else "left" if left and not right else None
    if PROFILE.search(text) or THREE_QUARTER.search(text):
        three_q = bool(THREE_QUARTER.search(text))
        if side is not None:
            table = {
                (False, "right", False): "EV01",
                (False, "right", True): "EV05",
                (False, "left", False): "EV22",
                (False, "left", True): "EV26",
                (True, "right", False): "EV08",
                (True, "right", True): "EV12",
                (True, "left", False): "EV29",
                (True, "left", True): "EV33",
            }
            code = table[(three_q, side, smile)]
            out.append(
                Hint(
                    "protocol",
                    code,
                    0.8,
                    f"{'three-quarter' if three_q else 'profile'}"
                    f" {side}{', smile' if smile else ''} in the name",
                )
            )
        out += [
            Hint("body_part", "HEAD", 0.8, "extraoral view word in the name"),
            Hint("modality", "XC", 0.7, "facial photograph"),
        ]
        return out
    if smile or FACE.search(text) or REST.search(text):
        if smile:
            out.append(Hint("protocol", "EV19", 0.75, "smile word in the name"))
        elif FACE.search(text):
            out.append(Hint("protocol", "EV15", 0.65, "face word in the name, no smile word"))
        out += [
            Hint("body_part", "HEAD", 0.75, "extraoral view word in the name"),
            Hint("modality", "XC", 0.7, "facial photograph"),
        ]
    return out


def hint_labels(rel_path: str | PurePath) -> Labels:
    """The hints as `Labels` (one per tag, the most confident)."""
    labels = Labels()
    for h in sorted(name_hints(rel_path), key=lambda h: h.confidence):
        labels = labels.with_label(
            Label(
                tag=h.tag,
                value=h.value,
                confidence=h.confidence,
                source=SOURCE,
                detail={"why": h.why},
            )
        )
    return labels
