"""What a DICOM value may hold, by its VR (PS3.5 6.2): one check for every value written.

`problem(vr, value)` says why a single value cannot be written (empty: it can). The manifest and
the options are checked with it before a run starts (`manifest.clean_patient`, naming the row
and column), and every string of a built dataset once more before it is written
(`iods.builders`), so no source (EXIF, a label, a template) can write what a PACS would misread.
Lengths are counted in the bytes of the character set we write (ISO_IR 192, UTF-8), as
dciodvfy counts them. No cutting here: a value that does not fit is refused.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

# Longest value, in bytes (PN: per component group).
MAX_BYTES = {
    "AE": 16,
    "AS": 4,
    "CS": 16,
    "DA": 8,
    "DS": 16,
    "DT": 26,
    "IS": 12,
    "LO": 64,
    "PN": 64,
    "SH": 16,
    "ST": 1024,
    "LT": 10240,
    "TM": 14,
    "UI": 64,
    "UC": 1 << 31,
    "UT": 1 << 31,
}
# Texts that may hold line breaks and tabs; the others no control character at all.
_TEXT = frozenset({"ST", "LT", "UT"})
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_TEXT = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")  # TAB, LF, FF, CR allowed
_CS = re.compile(r"[A-Z0-9 _]*")
_AS = re.compile(r"\d{3}[DWMY]")
_UI = re.compile(r"[0-9.]*")
_TM = re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")
EARLIEST_YEAR = 1850  # a date before it is a typo in this domain

# The patient and study fields a user gives (`plan.PatientInfo`): (DICOM keyword, VR).
PATIENT_VRS = {
    "patient_id": ("PatientID", "LO"),
    "patient_name": ("PatientName", "PN"),
    "birth_date": ("PatientBirthDate", "DA"),
    "sex": ("PatientSex", "CS"),
    "study_date": ("StudyDate", "DA"),
    "accession": ("AccessionNumber", "SH"),
    "study_description": ("StudyDescription", "LO"),
    "referring_physician": ("ReferringPhysicianName", "PN"),
    "institution": ("InstitutionName", "LO"),
    "laterality": ("Laterality", "CS"),
    "age": ("PatientAge", "AS"),
    "operator": ("OperatorsName", "PN"),
    "physician_of_record": ("PhysiciansOfRecord", "PN"),
    "timezone": ("TimezoneOffsetFromUTC", "SH"),
    # Not elements of their own: a defined term (timepoints.py) and the date days count from.
    "timepoint": ("Timepoint", "CS"),
    "treatment_start": ("TreatmentStart", "DA"),
}


def problem(vr: str, value: str) -> str:
    """Why `value` cannot be one value of an element of this VR; empty when it can."""
    if not value:
        return ""
    if "\\" in value and vr not in _TEXT:
        return f"{value!r} holds a backslash, DICOM's value separator (a PACS would read two values)"
    control = _CONTROL_TEXT if vr in _TEXT else _CONTROL
    if control.search(value):
        return f"{value!r} holds a control character"
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{value!r} is not text (bytes that are not UTF-8)"
    limit = MAX_BYTES.get(vr)
    if vr == "PN":
        for group in value.split("="):
            if len(group.encode("utf-8")) > 64:
                return f"{value[:40]!r}... is {len(group.encode('utf-8'))} bytes long; a PN holds 64"
    elif limit is not None and len(data) > limit:
        return f"{value[:40]!r}... is {len(data)} bytes long; a {vr} holds {limit}"
    if vr == "CS" and not _CS.fullmatch(value):
        return f"{value!r} must be upper-case letters, digits, space or '_' (CS)"
    if vr == "DA":
        return date_problem(value)
    if vr == "AS" and not _AS.fullmatch(value):
        return f"{value!r} is not an age (nnnD, nnnW, nnnM or nnnY)"
    if vr == "UI" and not _UI.fullmatch(value):
        return f"{value!r} is not a UID"
    if vr == "TM" and not _TM.fullmatch(value):
        return f"{value!r} is not a time (HHMMSS)"
    return ""


def date_problem(value: str) -> str:
    """A DA (YYYYMMDD) that exists, in the years dciodvfy takes (1000-2999)."""
    if not re.fullmatch(r"[12]\d{7}", value):
        return f"{value!r} is not a date (YYYYMMDD, years 1000-2999)"
    try:
        date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return f"{value[:4]}-{value[4:6]}-{value[6:]} does not exist"
    return ""


def implausible_date(value: str, today: date | None = None) -> str:
    """A date a person typed (manifest, options) that cannot be meant: before 1850 or after
    today (a camera's clock may be wrong; its dates are only checked to exist)."""
    if re.fullmatch(r"\d{8}", value):
        try:
            day = date(int(value[:4]), int(value[4:6]), int(value[6:]))
        except ValueError:
            return f"{value[:4]}-{value[4:6]}-{value[6:]} does not exist"
        if day.year < EARLIEST_YEAR:
            return f"{day.isoformat()} is before {EARLIEST_YEAR}"
        if day > (today or date.today()) + timedelta(days=1):  # a day's slack: time zones
            return f"{day.isoformat()} is in the future"
    return date_problem(value)
