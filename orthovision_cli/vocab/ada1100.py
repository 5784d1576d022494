"""ADA-1100 orthodontic photographic views and their DICOM coding.

The 73 views (``EV01``..``EV43`` extraoral, ``IV01``..``IV30`` intraoral) live in
``ada1100.csv``, the codes they use in ``ada1100_codes.csv``; both are the project's copy of the
dicom4ortho / DENT-OIP tables with the DICOM CP-1570 corrections applied (see ``NOTICE``).

`dicom.iods.views.apply_view` writes a view into a dataset (this package holds no DICOM code).

Patient Orientation (0020,0020): the tables name an orientation; the two values are the patient
direction of the image rows (first pixel to last pixel of a row) and of the columns (top to
bottom), PS3.3 C.7.6.1.1.1. The names are those of the reference tables:

==============================  ==========  ====================================================
name                            (row, col)  typical use
==============================  ==========  ====================================================
OrientationRight                A, F        right profile: the patient faces the observer's right
OrientationLeft                 P, F        left profile: the patient faces the observer's left
OrientationFront                L, F        facing the camera: the patient's left is image right
OrientationBack                 R, F        back of the head
OrientationSupineFeetToHead     L, P        maxillary arch seen from below, incisors at the top
OrientationProneHeadToFeet      L, A        mandibular arch seen from above, incisors at the bottom;
                                            also the raw maxillary mirror photograph (IV24)
OrientationSupineHeadToFeet     R, P        (no view uses it)
OrientationProneFeetToHead      R, A        (no view uses it; the reference gave it to IV24)
==============================  ==========  ====================================================
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from ..types import Code

__all__ = [
    "PATIENT_ORIENTATIONS",
    "View",
    "all_views",
    "code_for",
    "get_view",
    "is_view",
]

PATIENT_ORIENTATIONS: dict[str, tuple[str, str]] = {
    "OrientationRight": ("A", "F"),
    "OrientationLeft": ("P", "F"),
    "OrientationFront": ("L", "F"),
    "OrientationBack": ("R", "F"),
    "OrientationSupineFeetToHead": ("L", "P"),
    "OrientationProneHeadToFeet": ("L", "A"),
    "OrientationSupineHeadToFeet": ("R", "P"),
    "OrientationProneFeetToHead": ("R", "A"),
}

# Acquisition context columns of ada1100.csv and the concept name each one is coded under
# (TID 3465 VL Orthodontic Acquisition Context, CP-1570), in the order they are written.
_CONTEXT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("functional_conditions", "OrthognathicFunctionalCondition"),
    ("findings", "FindingByInspection"),
    ("observables", "ObservableEntity"),
    ("occlusion", "DentalOcclusion"),
)

# "EV01", "ev-01", "EV 1", "IV_30": a prefix, optional separators, one or two digits.
_CODE_RE = re.compile(r"(EV|IV)[\s_-]*0*(\d{1,2})", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class View:
    """One ADA-1100 view and the DICOM attributes that describe it.

    `patient_orientation` is (row direction, column direction), or ``()`` for the two close-up
    views (IV28, IV30) whose framing fixes no orientation. `view_modifiers` can only be written
    nested in a View Code Sequence item, so a view without `view_code` (IV28) keeps them as
    data only. `precoordinated` is the SNOMED CT concept for the whole view where one exists; its
    meaning is the SNOMED term and may exceed the 64 characters of a DICOM Code Meaning.
    """

    code: str
    mnemonic: str
    meaning: str
    patient_orientation: tuple[str, str] | tuple[()]
    image_laterality: str
    anatomic_region: Code
    anatomic_region_modifiers: tuple[Code, ...]
    primary_anatomic_structures: tuple[tuple[Code, tuple[Code, ...]], ...]
    devices: tuple[Code, ...]
    view_code: Code | None
    view_modifiers: tuple[Code, ...]
    acquisition_context: tuple[tuple[Code, Code], ...]
    image_comments: str
    series_description: str
    precoordinated: Code | None
    extraoral: bool


def _data_rows(name: str) -> list[dict[str, str]]:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


@cache
def _codes() -> dict[str, Code]:
    return {
        row["keyword"]: Code(row["value"], row["scheme"], row["meaning"])
        for row in _data_rows("ada1100_codes.csv")
    }


def code_for(keyword: str) -> Code:
    """The code a table keyword stands for (``"device_mirror"``, ``"co"``); KeyError if none."""
    return _codes()[keyword]


def _keywords(cell: str) -> tuple[str, ...]:
    # Multi-valued cells use "^" like the reference tables.
    return tuple(k for k in cell.split("^") if k)


def _view_from_row(row: dict[str, str]) -> View:
    codes = _codes()

    def many(column: str) -> tuple[Code, ...]:
        return tuple(codes[k] for k in _keywords(row[column]))

    def one(column: str) -> Code | None:
        found = many(column)
        if len(found) > 1:
            raise ValueError(f"{row['code']}: {column} holds more than one code")
        return found[0] if found else None

    orientation: tuple[str, str] | tuple[()] = (
        PATIENT_ORIENTATIONS[row["patient_orientation"]] if row["patient_orientation"] else ()
    )
    region = one("anatomic_region")
    if region is None:
        raise ValueError(f"{row['code']}: no anatomic region")
    structure_modifiers = many("primary_anatomic_structure_modifiers")
    structures = tuple((s, structure_modifiers) for s in many("primary_anatomic_structure"))
    context = tuple((codes[concept], value) for column, concept in _CONTEXT_COLUMNS for value in many(column))
    precoordinated = (
        Code(row["precoordinated_code"], "SCT", row["precoordinated_meaning"])
        if row["precoordinated_code"]
        else None
    )
    return View(
        code=row["code"],
        mnemonic=row["mnemonic"],
        meaning=row["meaning"],
        patient_orientation=orientation,
        image_laterality=row["image_laterality"],
        anatomic_region=region,
        anatomic_region_modifiers=many("anatomic_region_modifiers"),
        primary_anatomic_structures=structures,
        devices=many("devices"),
        view_code=one("view_code"),
        view_modifiers=many("view_modifiers"),
        acquisition_context=context,
        image_comments=row["image_comments"],
        series_description=row["series_description"],
        precoordinated=precoordinated,
        extraoral=row["code"].startswith("EV"),
    )


@cache
def _views() -> dict[str, View]:
    return {row["code"]: _view_from_row(row) for row in _data_rows("ada1100.csv")}


def all_views() -> tuple[View, ...]:
    """The 73 views, EV01..EV43 then IV01..IV30 (loaded once)."""
    return tuple(_views().values())


def _normalise_code(text: str) -> str | None:
    m = _CODE_RE.fullmatch(text.strip())
    if m is None:
        return None
    return f"{m.group(1).upper()}{int(m.group(2)):02d}"


def get_view(code: str) -> View:
    """The view for ``"EV01"``, ``"ev-01"``, ``"EV-01"``, ``"iv 7"``; KeyError if there is none."""
    key = _normalise_code(code) if isinstance(code, str) else None
    if key is None or key not in _views():
        raise KeyError(f"not an ADA-1100 view code: {code!r}")
    return _views()[key]


def is_view(text: object) -> bool:
    """Whether `text` is (a spelling of) one of the 73 ADA-1100 view codes."""
    if not isinstance(text, str):
        return False
    key = _normalise_code(text)
    return key is not None and key in _views()
