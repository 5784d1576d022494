"""Output file names from a documented template (docs/cli.md), safe on every OS."""

from __future__ import annotations

import re
import string
import unicodedata
from pathlib import PurePosixPath
from typing import Any

from .dicom.plan import InstancePlan
from .errors import UsageError

PLACEHOLDERS = {
    "PatientID": "Patient ID (or NOID)",
    "PatientName": "Patient's Name (or NONAME)",
    "StudyDate": "Study Date YYYYMMDD (or NODATE)",
    "StudyID": "Study ID",
    "StudyKey": "8 digits of the Study Instance UID (stable)",
    "SeriesNumber": "Series Number",
    "SeriesKey": "8 digits of the Series Instance UID (stable)",
    "Modality": "Modality",
    "InstanceNumber": "Instance Number",
    "SOPInstanceUID": "SOP Instance UID",
    "protocol": "protocol label (or NOPROTOCOL)",
    "source": "source file name without its extension",
    "source_rel": "source path below the input root, without extension",
    "page": "'_p2', '_p3', ... for later pages of a multi-page file; empty otherwise",
}
RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
}


def check_template(template: str) -> None:
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise UsageError(f"name template {template!r}: {exc}") from exc
    for name in names:
        if name not in PLACEHOLDERS:
            raise UsageError(
                f"name template: unknown placeholder {{{name}}}; known: {', '.join(PLACEHOLDERS)}"
            )
    if template.startswith("/") or ".." in PurePosixPath(template).parts:
        raise UsageError("name template must be a relative path without '..'")


MAX_CHARS = 120  # a component's characters (a folder copied to Windows keeps its paths short)
MAX_BYTES = 200  # its UTF-8 bytes: 255 is the limit (ext4, APFS, NTFS), less the temporary prefix


def safe_component(text: str, fallback: str = "_") -> str:
    """A path component that Windows, macOS and Linux all accept. A long one is cut before its
    extension (`.dcm` stays); bytes of a source name that were not UTF-8 (surrogateescape)
    become '_'."""
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r'[<>:"/\\|?*\x00-\x1f\x7f\ud800-\udfff]', "_", text)
    text = text.strip(" .")
    if not text:
        text = fallback
    if text.split(".")[0].upper() in RESERVED:
        text = "_" + text
    return _cut(text)


def _cut(text: str) -> str:
    if len(text) <= MAX_CHARS and len(text.encode()) <= MAX_BYTES:
        return text
    stem, dot, ext = text.rpartition(".")
    if not dot or not stem or len(ext) > 8 or not ext.isalnum():
        stem, ext = text, ""
    else:
        ext = "." + ext
    room_chars = MAX_CHARS - len(ext)
    stem = stem[:room_chars]
    while len(stem.encode()) + len(ext.encode()) > MAX_BYTES:
        stem = stem[:-1]
    return stem.rstrip(" .") + ext


def render(template: str, fields: dict[str, Any]) -> PurePosixPath:
    """Render and sanitise each component of the template."""
    parts = []
    for raw in template.split("/"):
        value = raw.format(**fields)
        parts.append(safe_component(value))
    return PurePosixPath(*parts)


def with_suffix_number(path: PurePosixPath, n: int) -> PurePosixPath:
    return path.with_name(f"{path.stem}_{n}{path.suffix}")


def instance_fields(plan: InstancePlan, page: int) -> dict[str, Any]:
    """The placeholders' values for one output instance (`page` 0 for the first)."""
    item = plan.input
    return {
        "PatientID": item.patient.patient_id or "NOID",
        "PatientName": item.patient.patient_name or "NONAME",
        "StudyDate": plan.study_date or "NODATE",
        "StudyID": plan.study_id,
        "StudyKey": plan.study_uid[-8:],
        "SeriesNumber": plan.series_number,
        "SeriesKey": plan.series_uid[-8:],
        "Modality": plan.modality,
        "InstanceNumber": plan.instance_number + page,
        "SOPInstanceUID": plan.page_uids[page] if plan.page_uids else plan.sop_uid,
        "protocol": item.labels.value("protocol") or "NOPROTOCOL",
        "source": PurePosixPath(item.rel).stem,
        "source_rel": str(PurePosixPath(item.rel).with_suffix("")),
        "page": f"_p{page + 1}" if page else "",
    }


def assign_names(plans: list[InstancePlan], template: str) -> list[list[str]]:
    """Output paths (relative, POSIX) for each plan, one per instance; two instances never get
    names that differ only in case (case-insensitive file systems exist)."""
    taken: set[str] = set()
    out = []
    for plan in plans:
        dests = []
        for i in range(len(plan.page_uids) or 1):
            rel = render(template, instance_fields(plan, i))
            n = 2
            cand = rel
            while str(cand).lower() in taken:
                cand = with_suffix_number(rel, n)
                n += 1
            taken.add(str(cand).lower())
            dests.append(str(cand))
        out.append(dests)
    return out
