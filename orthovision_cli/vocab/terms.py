"""Small vocabularies shared by the classifiers and the DICOM writer.

* modalities: the DCM codes of Modality (0008,0060) values, meanings from PS3.16 CID 29 / CID 33
  (``modalities.csv``);
* body parts: Body Part Examined (0018,0015) defined terms and the SNOMED CT anatomic region each
  stands for, PS3.16 Annex L (``body_parts.csv``);
* radiograph protocols: the radiographs this project meets, with their typical modality, body
  part, DICOM view code (CID 4010 / 4014) and SNOMED CT procedure where one exists
  (``radiograph_protocols.csv``);
* `protocol`: one entry point from free text to an ADA-1100 `View` or a radiograph `Protocol`.

Matching is deliberately conservative: text is lower-cased, punctuation becomes spaces, "xray"
becomes "x ray" and the filler words in `_FILLER` are dropped; the result must then equal a
known code, keyword, meaning or listed synonym. There is no fuzzy or partial matching, so an
ambiguous name ("profile", "frontal", "chest x-ray") stays unmatched and the caller keeps it as
text.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TypeVar

from ..types import Code
from .ada1100 import View, all_views, get_view, is_view

__all__ = [
    "BodyPart",
    "Protocol",
    "all_body_parts",
    "all_radiograph_protocols",
    "body_part",
    "is_modality",
    "modality_code",
    "normalise_phrase",
    "protocol",
    "radiograph_protocol",
]

_T = TypeVar("_T")

# Words that name the medium rather than the content: "Frontal Facial view" == "frontal facial".
_FILLER = frozenset(
    {"a", "the", "of", "view", "views", "photo", "photos", "photograph", "image", "picture", "shot"}
)


@dataclass(frozen=True, slots=True)
class BodyPart:
    """A Body Part Examined defined term and its anatomic region code (PS3.16 Annex L)."""

    keyword: str
    code: Code
    synonyms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Protocol:
    """A kind of radiograph: what it shows, how it is usually acquired and coded.

    `modalities` lists the usual Modality values, most typical first. `view` is the DICOM View
    Code Sequence value, `procedure` the SNOMED CT procedure; either is None where no code fits.
    """

    keyword: str
    meaning: str
    modalities: tuple[str, ...]
    body_part: BodyPart
    view: Code | None
    procedure: Code | None
    synonyms: tuple[str, ...] = ()

    @property
    def modality(self) -> str:
        return self.modalities[0]


def normalise_phrase(text: str) -> str:
    """Lower-case words of `text`, punctuation removed, "xray" split, filler words dropped."""
    words = re.sub(r"[^0-9a-z]+", " ", text.lower()).split()
    words = [w for word in words for w in (("x", "ray") if word == "xray" else (word,))]
    return " ".join(w for w in words if w not in _FILLER)


def _data_rows(name: str) -> list[dict[str, str]]:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def _split(cell: str) -> tuple[str, ...]:
    return tuple(s for s in cell.split("|") if s)


def _add_unique(index: dict[str, _T], key: str, target: _T, what: str) -> None:
    # A name that could mean two things is a table bug: fail loudly rather than pick one.
    if key in index and index[key] != target:
        raise ValueError(f"{what} name {key!r} is ambiguous")
    index[key] = target


# --- modalities ---------------------------------------------------------------------------


@cache
def _modalities() -> dict[str, Code]:
    return {r["value"]: Code(r["value"], "DCM", r["meaning"]) for r in _data_rows("modalities.csv")}


def modality_code(value: str) -> Code:
    """The DCM code of a Modality value (``"XC"``, ``"px"``...); KeyError if unknown."""
    key = value.strip().upper() if isinstance(value, str) else ""
    if key not in _modalities():
        raise KeyError(f"not a known modality: {value!r}")
    return _modalities()[key]


def is_modality(value: object) -> bool:
    """Whether `value` is a Modality value this project knows (case-insensitive)."""
    return isinstance(value, str) and value.strip().upper() in _modalities()


# --- body parts ---------------------------------------------------------------------------


@cache
def _body_parts() -> dict[str, BodyPart]:
    parts = {}
    for r in _data_rows("body_parts.csv"):
        parts[r["keyword"]] = BodyPart(
            r["keyword"], Code(r["value"], "SCT", r["meaning"]), _split(r["synonyms"])
        )
    return parts


@cache
def _body_part_index() -> dict[str, BodyPart]:
    index: dict[str, BodyPart] = {}
    for part in _body_parts().values():
        for name in (part.keyword, part.code.meaning, *part.synonyms):
            _add_unique(index, normalise_phrase(name), part, "body part")
    return index


def all_body_parts() -> tuple[BodyPart, ...]:
    return tuple(_body_parts().values())


def body_part(value: str) -> BodyPart:
    """The body part for a defined term (``"TMJ"``), its meaning or a synonym; else KeyError."""
    if isinstance(value, str):
        found = _body_parts().get(value.strip().upper()) or _body_part_index().get(normalise_phrase(value))
        if found is not None:
            return found
    raise KeyError(f"not a known Body Part Examined: {value!r}")


# --- radiograph protocols -----------------------------------------------------------------


def _optional_code(value: str, scheme: str, meaning: str) -> Code | None:
    return Code(value, scheme, meaning) if value else None


@cache
def _protocols() -> dict[str, Protocol]:
    protocols = {}
    for r in _data_rows("radiograph_protocols.csv"):
        protocols[r["keyword"]] = Protocol(
            keyword=r["keyword"],
            meaning=r["meaning"],
            modalities=_split(r["modalities"]),
            body_part=_body_parts()[r["body_part"]],
            view=_optional_code(r["view_value"], "SCT", r["view_meaning"]),
            procedure=_optional_code(r["procedure_value"], "SCT", r["procedure_meaning"]),
            synonyms=_split(r["synonyms"]),
        )
    return protocols


@cache
def _protocol_index() -> dict[str, Protocol]:
    index: dict[str, Protocol] = {}
    for p in _protocols().values():
        for name in (p.keyword, p.meaning, *p.synonyms):
            _add_unique(index, normalise_phrase(name), p, "protocol")
    return index


def all_radiograph_protocols() -> tuple[Protocol, ...]:
    return tuple(_protocols().values())


def radiograph_protocol(value: str) -> Protocol:
    """The radiograph protocol for a keyword (``"CEPH_LATERAL"``) or synonym (``"opg"``)."""
    found = _protocol_index().get(normalise_phrase(value)) if isinstance(value, str) else None
    if found is None:
        raise KeyError(f"not a known radiograph protocol: {value!r}")
    return found


# --- one entry point ------------------------------------------------------------------------

# "EV-01_EO.RP.LR.CO": a view code, a separator, then that view's own mnemonic.
_CODE_AND_MNEMONIC = re.compile(r"((?:EV|IV)[\s_-]*\d{1,2})[\s_-]+(\S+)", re.IGNORECASE)


@cache
def _view_index() -> dict[str, View]:
    index: dict[str, View] = {}
    for view in all_views():
        _add_unique(index, normalise_phrase(view.meaning), view, "view")
    for r in _data_rows("view_names.csv"):
        _add_unique(index, normalise_phrase(r["phrase"]), get_view(r["view"]), "view")
    return index


@cache
def _mnemonics() -> dict[str, View]:
    return {v.mnemonic.upper(): v for v in all_views()}


def _view_for(text: str) -> View | None:
    stripped = text.strip()
    if is_view(stripped):
        return get_view(stripped)
    by_mnemonic = _mnemonics().get(stripped.upper())
    if by_mnemonic is not None:
        return by_mnemonic
    m = _CODE_AND_MNEMONIC.fullmatch(stripped)
    if m and is_view(m.group(1)):
        view = get_view(m.group(1))
        if view.mnemonic.upper() == m.group(2).upper():
            return view
    return _view_index().get(normalise_phrase(stripped))


def protocol(value: str) -> View | Protocol | None:
    """Resolve a free-text protocol value to an ADA-1100 view or a radiograph protocol.

    Tried in order: an ADA-1100 code (``"EV01"``, ``"ev-01"``), a mnemonic (``"EO.RP.LR.CO"``), a
    code followed by its own mnemonic (``"EV-01_EO.RP.LR.CO"``), a view's full meaning or one of
    the common names in ``view_names.csv`` (``"right profile"`` -> EV01, ``"Frontal Facial view"``
    -> EV15), then a radiograph protocol keyword, meaning or synonym (``"pano"``). None when
    nothing matches exactly.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    view = _view_for(value)
    if view is not None:
        return view
    return _protocol_index().get(normalise_phrase(value))
