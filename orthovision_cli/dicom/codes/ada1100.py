"""ADA-1100 orthodontic photographic views and their DICOM coding.

The 73 views (``EV01``..``EV43`` extraoral, ``IV01``..``IV30`` intraoral) live in
``ada1100.csv``, the codes they use in ``ada1100_codes.csv``; both are the project's copy of the
dicom4ortho / DENT-OIP tables with the DICOM CP-1570 corrections applied (see ``NOTICE``).

`apply_view` writes a view into a dataset the way PS3.3 wants it for a VL Photographic Image:
modifiers nested inside the item they modify, acquisition context as CODE content items.

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
from typing import TYPE_CHECKING

from orthovision_cli.labels.model import Code

if TYPE_CHECKING:  # pydicom loads only when a dataset is written, not for label look-ups
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

__all__ = [
    "PATIENT_ORIENTATIONS",
    "View",
    "all_views",
    "apply_view",
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

# CodeValue is SH (16 characters); longer values go to LongCodeValue (PS3.3 Table 8.8-1).
_SH_MAX = 16


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
    context = tuple(
        (codes[concept], value) for column, concept in _CONTEXT_COLUMNS for value in many(column)
    )
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


def _code_item(code: Code) -> Dataset:
    """A Code Sequence Macro item (PS3.3 Table 8.8-1)."""
    from pydicom.dataset import Dataset

    item = Dataset()
    if len(code.value) > _SH_MAX:
        item.LongCodeValue = code.value
    else:
        item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme
    item.CodeMeaning = code.meaning
    return item


def _code_sequence(codes: tuple[Code, ...]) -> Sequence:
    from pydicom.sequence import Sequence

    return Sequence([_code_item(c) for c in codes])


def _set_or_drop(ds: Dataset, keyword: str, items: list[Dataset]) -> None:
    # Owned attributes are replaced, so a second apply_view leaves no trace of the first view.
    from pydicom.sequence import Sequence

    if items:
        setattr(ds, keyword, Sequence(items))
    elif keyword in ds:
        delattr(ds, keyword)


def apply_view(ds: Dataset, view: View) -> None:
    """Write `view` into `ds`: the view's anatomy, view, device and acquisition context attributes.

    Sets Patient Orientation (empty, Type 2, when the view fixes none), Image Laterality, Image
    Comments, Anatomic Region Sequence (modifiers nested), Primary Anatomic Structure Sequence
    (modifiers nested), View Code Sequence (View Modifier Code Sequence nested), Device Sequence
    and Acquisition Context Sequence (CODE content items). Sequences the view has no value for
    are removed, except Acquisition Context Sequence, which is Type 2 and left empty.
    Series-level attributes (Series Description) are the caller's.
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds.PatientOrientation = list(view.patient_orientation) if view.patient_orientation else ""
    ds.ImageLaterality = view.image_laterality
    ds.ImageComments = view.image_comments

    region = _code_item(view.anatomic_region)
    if view.anatomic_region_modifiers:
        region.AnatomicRegionModifierSequence = _code_sequence(view.anatomic_region_modifiers)
    ds.AnatomicRegionSequence = Sequence([region])

    structures = []
    for structure, modifiers in view.primary_anatomic_structures:
        item = _code_item(structure)
        if modifiers:
            item.PrimaryAnatomicStructureModifierSequence = _code_sequence(modifiers)
        structures.append(item)
    _set_or_drop(ds, "PrimaryAnatomicStructureSequence", structures)

    view_items = []
    if view.view_code is not None:
        item = _code_item(view.view_code)
        if view.view_modifiers:
            item.ViewModifierCodeSequence = _code_sequence(view.view_modifiers)
        view_items.append(item)
    _set_or_drop(ds, "ViewCodeSequence", view_items)

    # Device Sequence items are the Code Sequence Macro plus optional device details (C.7.6.12).
    _set_or_drop(ds, "DeviceSequence", [_code_item(d) for d in view.devices])

    context = []
    for concept, value in view.acquisition_context:
        item = Dataset()
        item.ValueType = "CODE"
        item.ConceptNameCodeSequence = Sequence([_code_item(concept)])
        item.ConceptCodeSequence = Sequence([_code_item(value)])
        context.append(item)
    ds.AcquisitionContextSequence = Sequence(context)
