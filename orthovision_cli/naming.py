"""Output file names from a documented template (docs/cli.md), safe on every OS."""

from __future__ import annotations

import re
import string
import unicodedata
from pathlib import PurePosixPath
from typing import Any

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
RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
            *(f"LPT{i}" for i in range(1, 10))}


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


def safe_component(text: str, fallback: str = "_") -> str:
    """A path component that Windows, macOS and Linux all accept."""
    text = unicodedata.normalize("NFC", text)
    text = re.sub(r'[<>:"/\\|?*\x00-\x1f\x7f]', "_", text)
    text = text.strip(" .")
    if not text:
        text = fallback
    if text.split(".")[0].upper() in RESERVED:
        text = "_" + text
    return text[:120]


def render(template: str, fields: dict[str, Any]) -> PurePosixPath:
    """Render and sanitise each component of the template."""
    parts = []
    for raw in template.split("/"):
        value = raw.format(**fields)
        parts.append(safe_component(value))
    return PurePosixPath(*parts)


def with_suffix_number(path: PurePosixPath, n: int) -> PurePosixPath:
    return path.with_name(f"{path.stem}_{n}{path.suffix}")
