"""ADA-1100 views written into a dataset the way PS3.3 wants them for a VL Photographic Image:
modifiers nested inside the item they modify, acquisition context as CODE content items."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from ...types import Code
from ...vocab.ada1100 import View
from .. import timepoints
from .modules import BuiltDataset

# CodeValue is SH (16 characters); longer values go to LongCodeValue (PS3.3 Table 8.8-1).
_SH_MAX = 16


def _code_item(code: Code) -> Dataset:
    """A Code Sequence Macro item (PS3.3 Table 8.8-1)."""
    item = BuiltDataset()
    if len(code.value) > _SH_MAX:
        item.LongCodeValue = code.value
    else:
        item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme
    item.CodeMeaning = code.meaning
    return item


def _code_sequence(codes: tuple[Code, ...]) -> Sequence:

    return Sequence([_code_item(c) for c in codes])


def _set_or_drop(ds: Dataset, keyword: str, items: list[Dataset]) -> None:
    # Owned attributes are replaced, so a second apply_view leaves no trace of the first view.

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
        item = BuiltDataset()
        item.ValueType = "CODE"
        item.ConceptNameCodeSequence = Sequence([_code_item(concept)])
        item.ConceptCodeSequence = Sequence([_code_item(value)])
        context.append(item)
    ds.AcquisitionContextSequence = Sequence(context)


def add_timepoint(ds: Dataset, event: Code, offset_days: int | None) -> None:
    """The visit's place in treatment as Acquisition Context items (DENT-OIP, TID 1502's
    concepts): the event type (CODE) and, where counted, the days since it (NUMERIC)."""
    context = list(ds.get("AcquisitionContextSequence", []))
    item = BuiltDataset()
    item.ValueType = "CODE"
    item.ConceptNameCodeSequence = Sequence([_code_item(timepoints.EVENT_TYPE)])
    item.ConceptCodeSequence = Sequence([_code_item(event)])
    context.append(item)
    if offset_days is not None:
        item = BuiltDataset()
        item.ValueType = "NUMERIC"
        item.ConceptNameCodeSequence = Sequence([_code_item(timepoints.OFFSET_FROM_EVENT)])
        item.NumericValue = str(offset_days)
        item.MeasurementUnitsCodeSequence = Sequence([_code_item(timepoints.DAYS)])
        context.append(item)
    ds.AcquisitionContextSequence = Sequence(context)
