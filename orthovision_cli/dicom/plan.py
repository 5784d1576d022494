"""Plan the DICOM for a batch: which IOD, grouping into studies and series, numbering, UIDs.
Over 400 lines on purpose: the grouping rules (studies, visits, series, numbering) are read
together, each beside the others it depends on; so are the plan group a state row is indexed by
(`plan_group`) and what the state keeps of a plan (`stored_form`), which must follow them.

Grouping (documented in docs/dicom.md):
- a study per patient and study date; where the date is unknown, per patient, source folder and
  capture day (a folder of photos taken years apart is not one visit; its date then is that day;
  files without a capture time join the folder's one day, or are a study of their own);
- within such a day, photographs (XC) with a capture time are cut into visits (`capture_sessions`:
  a gap of more than `visit_gap` minutes, or another camera), each a study of its own; the first
  visit keeps the day's study (and so its UID), where radiographs and undated files stay;
- a series per modality, family and body part (extraoral photos, intraoral photos, each
  radiograph kind) and capture session (same source folder, same camera), so that every
  series-level attribute (Modality, Body Part Examined, Protocol Name, Series Description) is
  true of all its instances;
- Instance Numbers in acquisition order (EXIF capture time, then path, then page).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from ..errors import UnsupportedFormat
from ..labels.model import TAGS, Label, Labels
from ..types import Probe
from ..vocab import ada1100
from . import timepoints
from .uids import uid_from

# pydicom.uid's VLPhotographicImageStorage, SecondaryCaptureImageStorage and the three
# MultiFrame...SecondaryCaptureImageStorage, spelled out: planning must not import pydicom (a
# re-run with nothing to do never loads it). tests/test_architecture.py holds them equal.
VL_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MF_GRAYSCALE_BYTE_SC = "1.2.840.10008.5.1.4.1.1.7.2"
MF_GRAYSCALE_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
MF_TRUE_COLOR_SC = "1.2.840.10008.5.1.4.1.1.7.4"

SOP_CLASS_NAMES = {
    VL_PHOTOGRAPHIC: "VL Photographic Image",
    SECONDARY_CAPTURE: "Secondary Capture Image",
    MF_GRAYSCALE_BYTE_SC: "Multi-frame Grayscale Byte SC Image",
    MF_GRAYSCALE_WORD_SC: "Multi-frame Grayscale Word SC Image",
    MF_TRUE_COLOR_SC: "Multi-frame True Color SC Image",
}

MULTIFRAME = frozenset({MF_GRAYSCALE_BYTE_SC, MF_GRAYSCALE_WORD_SC, MF_TRUE_COLOR_SC})
PHOTO_MODALITIES = frozenset({"XC", "ES", "GM", "SM", "OP"})


@dataclass(frozen=True, slots=True)
class PatientInfo:
    """Patient and study data a user supplies (options, manifest row, path template)."""

    patient_id: str = ""
    patient_name: str = ""
    birth_date: str = ""  # YYYYMMDD
    sex: str = ""  # M, F, O
    study_date: str = ""  # YYYYMMDD
    accession: str = ""
    study_description: str = ""
    referring_physician: str = ""
    institution: str = ""
    laterality: str = ""  # R, L (paired body parts)
    age: str = ""  # Patient's Age, DICOM AS: 012Y, 006M, ...
    operator: str = ""  # Operators' Name (PN): who took the pictures or scanned the films
    physician_of_record: str = ""  # Physician(s) of Record (PN): the treating orthodontist
    timezone: str = ""  # Timezone Offset From UTC, "+HHMM"/"-HHMM" (else the camera's, if stated)
    timepoint: str = ""  # the visit's place in treatment (timepoints.TIMEPOINTS: PROGRESS, ...)
    treatment_start: str = ""  # YYYYMMDD: a progress visit's days are counted from it

    def merged(self, other: PatientInfo) -> PatientInfo:
        """Self, with the fields `other` gives overriding."""
        values = {k: (getattr(other, k) or getattr(self, k)) for k in self.__dataclass_fields__}
        return PatientInfo(**values)


# The patient and study fields a user may give (options, TOML keys, manifest columns).
PATIENT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(PatientInfo))
# Fields added later: left out of an instance's settings digest while empty, so that the UIDs of
# outputs that do not use them stay what they were.
_LATER_FIELDS = ("timepoint", "treatment_start")


@dataclass(slots=True)  # one per input, many kept: no __dict__ each
class PlanInput:
    """One input (one file, or one page of a multi-page file) ready to be planned."""

    key: str  # stable id: content hash (+ page)
    rel: str  # path below the input root (POSIX)
    probe: Probe
    labels: Labels
    patient: PatientInfo
    content_hash: str


@dataclass(slots=True)  # one per input, many kept: no __dict__ each
class InstancePlan:
    input: PlanInput
    sop_class_uid: str
    study_uid: str
    series_uid: str
    sop_uid: str
    study_id: str
    study_date: str
    study_time: str
    series_number: int
    instance_number: int
    series_description: str
    modality: str
    acquired: datetime | None
    # Series level, so the same for every instance of the series: the view family of dental
    # photographs ("Orthodontic Extraoral Series"), the radiograph kind, or nothing.
    protocol_name: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    # Study level: a visit's description (its timepoint, or its first capture), and its
    # timepoint with the days since treatment started (timepoints.py).
    study_description: str = ""
    timepoint: str = ""
    timepoint_offset: int | None = None
    # One SOP Instance UID per output instance: a multi-page file that does not fit a
    # multi-frame IOD gives one instance per page (Instance Numbers follow on).
    page_uids: list[str] = field(default_factory=list)

    @property
    def multiframe(self) -> bool:
        return self.sop_class_uid in (MF_GRAYSCALE_BYTE_SC, MF_GRAYSCALE_WORD_SC, MF_TRUE_COLOR_SC)

    @property
    def sop_class_name(self) -> str:
        return SOP_CLASS_NAMES[self.sop_class_uid]


# Rows and Columns are US (unsigned 16-bit) in every image IOD; a Pixel Data value of native
# (uncompressed) pixels must fit a 32-bit even length.
MAX_SIDE = 65535
MAX_PIXEL_DATA = 0xFFFFFFFE


def check_frame_limits(probe: Probe) -> None:
    """Refuse, before anything is decoded or written, an input DICOM cannot hold as one frame
    per page: more than 65535 rows or columns (a rotation swaps them, so both are bounded)."""
    for i, page in enumerate(probe.pages, start=1):
        if page.rows > MAX_SIDE or page.columns > MAX_SIDE:
            where = f" (page {i})" if len(probe.pages) > 1 else ""
            raise UnsupportedFormat(
                f"{page.columns}x{page.rows} pixels{where}: a DICOM frame is at most "
                f"{MAX_SIDE} pixels a side (tiling is not supported)",
                path=probe.path,
            )
    total = sum(p.rows * p.columns * p.samples * (2 if p.bits > 8 else 1) for p in probe.pages)
    if probe.format != "jpeg" and total > MAX_PIXEL_DATA:
        raise UnsupportedFormat(
            f"{total:,} bytes of pixels: more than one DICOM Pixel Data element can hold",
            path=probe.path,
        )


def choose_sop_class(modality: str, probe: Probe) -> str:
    """The IOD for a modality and the image's pixel facts."""
    page = probe.first
    multi = len(probe.pages) > 1 and all(
        (p.rows, p.columns, p.samples, p.bits, p.photometric)
        == (page.rows, page.columns, page.samples, page.bits, page.photometric)
        for p in probe.pages
    )
    if modality in PHOTO_MODALITIES and page.bits == 8 and not multi:
        return VL_PHOTOGRAPHIC
    if page.photometric == "MONOCHROME2" and probe.format != "jpeg":
        if page.bits == 16:
            return MF_GRAYSCALE_WORD_SC
        return MF_GRAYSCALE_BYTE_SC
    if multi and page.photometric == "RGB" and page.bits == 8 and probe.format != "jpeg":
        return MF_TRUE_COLOR_SC
    return SECONDARY_CAPTURE


def settings_digest(item: PlanInput, extra: dict[str, Any], memo: dict[Any, str] | None = None) -> str:
    """What the instance's UID depends on besides its content: its labels, patient and study
    data and the run's `extra`. `memo`: digests already made for one `extra` (a batch's inputs
    mostly share their labels and patient)."""
    labels = tuple(item.labels.value(t) for t in TAGS)
    if memo is not None and (got := memo.get((labels, item.patient))) is not None:
        return got
    patient = item.patient  # every field a string: asdict's deep copy is not needed
    payload = {
        "labels": dict(zip(TAGS, labels, strict=True)),
        "patient": {k: v for k in PATIENT_FIELDS if (v := getattr(patient, k)) or k not in _LATER_FIELDS},
        "extra": extra,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    if memo is not None:
        memo[(labels, patient)] = digest
    return digest


def _sort_key(item: PlanInput) -> tuple[int, str, str]:
    acq = item.probe.exif.acquired
    return (0 if acq else 1, acq.isoformat() if acq else "", item.rel)


def plan_batch(
    items: Sequence[PlanInput],
    secret: bytes,
    *,
    default_modality: str = "OT",
    extra_settings: dict[str, Any] | None = None,
    visit_gap: int = 0,
) -> list[InstancePlan]:
    """Plan every input of a batch (the grouping needs to see them all). `visit_gap` (minutes,
    0: off) cuts a day's photographs into visits, each a study (`capture_sessions`)."""
    extra = extra_settings or {}
    digests: dict[Any, str] = {}  # settings_digest's, for this `extra`
    studies = _studies(items, visit_gap)

    plans: list[InstancePlan] = []
    for study_key in sorted(studies):
        members = sorted(studies[study_key], key=_sort_key)
        dates = [m.probe.exif.acquired for m in members if m.probe.exif.acquired]
        first = min(dates) if dates else None
        study_date = members[0].patient.study_date or (first.strftime("%Y%m%d") if first else "")
        study_time = (
            first.strftime("%H%M%S")
            if first and (not members[0].patient.study_date or first.strftime("%Y%m%d") == study_date)
            else ""
        )
        study_uid = uid_from(secret, "study", *study_key)
        study_id = study_uid[-8:]
        visit = timepoints.study_facts(
            [(m.patient.timepoint, m.patient.treatment_start) for m in members],
            any(is_session_photo(m) for m in members),
            study_date,
            first,
        )
        series: dict[tuple[str, str, str, str, str], list[PlanInput]] = defaultdict(list)
        for m in members:
            modality = (m.labels.value("modality") or default_modality).upper()
            session = m.probe.path.parent.absolute().as_posix()
            camera = f"{m.probe.exif.make}|{m.probe.exif.model}"
            body = (m.labels.value("body_part") or "").upper()
            series[(modality, series_family(m), body, session, camera)].append(m)
        ordered = sorted(series.items(), key=lambda kv: _sort_key(kv[1][0]))
        for series_number, (series_key, group) in enumerate(ordered, start=1):
            modality, family = series_key[0], series_key[1]
            series_uid = uid_from(secret, "series", *study_key, *series_key)
            instance_number = 1
            for m in group:
                digest = settings_digest(m, extra, digests)
                sop_class = choose_sop_class(modality, m.probe)
                pages = 1 if sop_class in MULTIFRAME else len(m.probe.pages)
                # The series UID is part of the instance's: an instance regrouped into another
                # study or series is a new instance (the earlier one is superseded), never the
                # same SOP Instance UID under two series.
                sop_uid = uid_from(secret, "sop", m.key, digest, series_uid)
                page_uids = [sop_uid] + [
                    uid_from(secret, "sop", m.key, digest, series_uid, str(i)) for i in range(1, pages)
                ]
                plans.append(
                    InstancePlan(
                        input=m,
                        sop_class_uid=sop_class,
                        study_uid=study_uid,
                        series_uid=series_uid,
                        sop_uid=sop_uid,
                        study_id=study_id,
                        study_date=study_date,
                        study_time=study_time,
                        series_number=series_number,
                        instance_number=instance_number,
                        series_description=_series_description(modality, family),
                        modality=modality,
                        acquired=m.probe.exif.acquired,
                        protocol_name=_protocol_name(family),
                        settings=extra,
                        page_uids=page_uids,
                        **visit,
                    )
                )
                instance_number += pages
    return plans


@dataclass
class IdentityTally:
    """What a PACS would make of the patients of a run's plans, added up over the parts a big run
    is planned in (`add` per part): instances written without a Patient ID (a PACS files them
    under an empty ID, one "patient" for all), and an unknown patient that would hold several
    studies (most likely of several people)."""

    blank: int = 0  # new instances without a Patient ID
    blank_unnamed: bool = False  # ... one of them without a name either
    unknown_studies: set[str] = field(default_factory=set)  # studies of the unknown patient
    groups: set[str] = field(default_factory=set)  # the unknown patient's plan groups planned

    def add(self, new: Sequence[InstancePlan], everything: Sequence[InstancePlan]) -> None:
        """`new`: the plans written now; `everything`: those and the earlier inputs they were
        planned with."""
        blank = [p for p in new if not p.input.patient.patient_id]
        self.blank += len(blank)
        self.blank_unnamed = self.blank_unnamed or any(not p.input.patient.patient_name for p in blank)
        nobody = (p for p in everything if not (p.input.patient.patient_id or p.input.patient.patient_name))
        self.unknown_studies.update(p.study_uid for p in nobody)
        groups = (plan_group(p.input) for p in new if not p.input.patient.patient_id)
        self.groups.update(g for g in groups if g.startswith(UNKNOWN_PATIENT_GROUP))

    def warnings(self, elsewhere: Callable[[set[str]], int]) -> list[str]:
        """The run's lines; `elsewhere(groups)`: the unknown patient's plan groups of earlier runs
        besides `groups` (each at least one study), asked only when it matters."""
        out = []
        if self.blank:
            out.append(
                f"{self.blank} instance(s) written without a Patient ID: a PACS files them all under one "
                "empty ID; give --patient-id, a manifest or --path-template"
            )
        if not self.blank_unnamed:
            return out
        unknown_elsewhere = elsewhere(self.groups) if self.groups else 0
        studies = len(self.unknown_studies) + unknown_elsewhere
        if studies > 1:
            count = f"at least {studies}" if unknown_elsewhere else str(studies)
            out.append(
                f"one unknown patient (no Patient ID, no name) holds {count} studies: a PACS shows "
                "them as one person's; give each its patient"
            )
        return out


def is_session_photo(item: PlanInput) -> bool:
    """A photograph with a capture time: what visits are cut from."""
    modality = (item.labels.value("modality") or "").upper()
    return modality == "XC" and item.probe.exif.acquired is not None


FRONTAL_AT_REST = frozenset({"EV15", "EV17"})  # where a records series starts (records-default)


def series_restarts(views: Sequence[str], view: str) -> bool:
    """A frontal at rest after intraoral views that came after a frontal at rest: the records
    series starts again, the next patient's (a retaken frontal, or intraoral views first and
    the face after, are not)."""
    if view not in FRONTAL_AT_REST:
        return False
    rest = next((i for i, v in enumerate(views) if v in FRONTAL_AT_REST), None)
    return rest is not None and any(v.startswith("IV") for v in views[rest + 1 :])


def capture_sessions(items: Sequence[PlanInput], visit_gap: int) -> list[list[PlanInput]]:
    """Photographs (`is_session_photo`) cut into capture sessions, in capture order, per source
    folder: a new session after more than `visit_gap` minutes without a photo, when the camera
    (EXIF make and model) changes, or when the series restarts (`series_restarts`).
    `visit_gap` 0: one session per folder."""
    by_folder: dict[str, list[PlanInput]] = defaultdict(list)
    for item in items:
        if is_session_photo(item):
            by_folder[item.probe.path.parent.absolute().as_posix()].append(item)
    sessions: list[list[PlanInput]] = []
    for folder in sorted(by_folder):
        current: list[PlanInput] = []
        views: list[str] = []  # the current session's views, in capture order
        for item in sorted(by_folder[folder], key=_sort_key):
            view = (item.labels.value("protocol") or "").upper()
            if (
                current
                and visit_gap > 0
                and (_new_session(current[-1], item, visit_gap) or series_restarts(views, view))
            ):
                sessions.append(current)
                current, views = [], []
            current.append(item)
            views.append(view)
        sessions.append(current)
    return sessions


def _camera(item: PlanInput) -> tuple[str, str]:
    return (item.probe.exif.make or "", item.probe.exif.model or "")


def _new_session(prev: PlanInput, item: PlanInput, visit_gap: int) -> bool:
    a, b = prev.probe.exif.acquired, item.probe.exif.acquired
    assert a is not None and b is not None  # is_session_photo
    return (b - a).total_seconds() > visit_gap * 60 or _camera(prev) != _camera(item)


def _split_visits(
    studies: dict[tuple[str, ...], list[PlanInput]], visit_gap: int
) -> dict[tuple[str, ...], list[PlanInput]]:
    """Each study cut by capture session: the first session (with the study's radiographs and
    undated files) keeps the study's key, each later one is keyed by its first capture time. A
    study whose date the user gave is the user's: not cut."""
    out: dict[tuple[str, ...], list[PlanInput]] = {}
    for key, members in studies.items():
        sessions = capture_sessions(members, visit_gap) if key[1].startswith("folder:") else []
        if len(sessions) <= 1:
            out[key] = members
            continue
        later = {id(m) for s in sessions[1:] for m in s}
        out[key] = [m for m in members if id(m) not in later]
        for session in sessions[1:]:
            first = session[0].probe.exif.acquired
            assert first is not None
            out[(*key, f"visit:{first.isoformat()}|{'|'.join(_camera(session[0]))}")] = session
    return out


UNKNOWN_PATIENT_GROUP = "anon:"  # the prefix of the plan groups of inputs without a patient


def plan_group(item: PlanInput) -> str:
    """The key of the inputs an input's plan can depend on (`_group_key`, digested): a run that
    adds inputs plans them with the earlier inputs of their groups only (the state indexes it)."""
    who, where = _group_key(item)
    # 64 bits: two groups of one digest would only read each other's plans (planning still
    # groups by `_studies`), never mix them.
    digest = hashlib.sha256(json.dumps([who, where]).encode()).hexdigest()[:16]
    # The unknown patient's groups stand apart in the index (`identity_warnings` counts them).
    return digest if who else UNKNOWN_PATIENT_GROUP + digest


def _group_key(item: PlanInput) -> tuple[str, str]:
    """(patient, study date) where the user gave the date, else (patient, absolute folder): every
    study key of `_studies` starts with it (a day, a visit are cut within it), and series,
    numbering and UIDs are per study, so two inputs of different groups never share a study."""
    p = item.patient
    who = p.patient_id or p.patient_name
    if p.study_date:
        return (who, p.study_date)
    # The absolute folder: two input roots with the same layout are different studies.
    return (who, f"folder:{item.probe.path.parent.absolute().as_posix()}")


def _studies(items: Sequence[PlanInput], visit_gap: int = 0) -> dict[tuple[str, ...], list[PlanInput]]:
    """Inputs by study: (patient, study date) where the user gave the date; else (patient,
    folder, capture day), files without a capture time joining the folder's one day; then each
    cut into visits (`_split_visits`) where `visit_gap` is on. Each key starts with the inputs'
    `_group_key`."""
    studies: dict[tuple[str, ...], list[PlanInput]] = defaultdict(list)
    undated: dict[tuple[str, str], list[PlanInput]] = defaultdict(list)
    days: dict[tuple[str, str], set[str]] = defaultdict(set)
    for item in items:
        group = _group_key(item)
        if item.patient.study_date:
            studies[group].append(item)
            continue
        acq = item.probe.exif.acquired
        if acq is None:
            undated[group].append(item)
            continue
        day = acq.strftime("%Y%m%d")
        days[group].add(day)
        studies[(*group, day)].append(item)
    for group, members in undated.items():
        seen = days.get(group, set())
        key = (*group, next(iter(seen))) if len(seen) == 1 else group
        studies[key].extend(members)
    return _split_visits(studies, visit_gap) if visit_gap > 0 else studies


def stored_form(item: PlanInput) -> PlanInput:
    """What the state keeps of a converted input's plan: what `plan_batch` (and `_group_key`)
    read of an earlier input, so a later run plans it exactly as the full one (the test holds
    them equal). Dropped: the file size, JPEG segment table, ICC profile, DPI, mtime, page descriptions,
    and all of each label but its value (the row's labels keep confidence, source, codes)."""
    p = item.probe
    slim = Probe(
        path=p.path,
        format=p.format,
        size=0,  # planning never reads it
        pages=[replace(page, description="") for page in p.pages],
        exif=p.exif,
    )
    labels = Labels(
        **{tag: Label(lab.tag, lab.value) for tag in TAGS if (lab := item.labels.get(tag)) is not None}
    )
    return PlanInput(item.key, item.rel, slim, labels, item.patient, item.content_hash)


def series_family(item: PlanInput) -> str:
    """What one series holds besides its modality and body part: the ADA-1100 view family of a
    dental photograph ("Orthodontic Extraoral Series", "Orthodontic Intraoral Series"), the kind
    of a radiograph (its protocol: PANORAMIC, CEPH_LATERAL, ...), or nothing."""
    protocol = item.labels.value("protocol")
    if not protocol:
        return ""
    try:
        return ada1100.get_view(str(protocol)).series_description
    except KeyError:
        return str(protocol).upper()


def _protocol_name(family: str) -> str:
    return family[:64]


def _series_description(modality: str, family: str) -> str:
    if family.startswith("Orthodontic "):
        return family[:64]
    kind = {
        "XC": "Photographs",
        "PX": "Panoramic radiographs",
        "DX": "Radiographs",
        "CR": "Radiographs",
        "IO": "Intraoral radiographs",
        "MG": "Mammograms",
    }.get(modality, f"{modality} images")
    return kind[:64]
