"""What the user says about the inputs (options, a manifest, a path template), checked once in
the main process before any work, then handed to every worker."""

from __future__ import annotations

from ..answers import radiographs_by_folder
from ..config import ConvertSettings
from ..errors import UsageError
from ..manifest import Manifest, PathTemplate, UserInput, clean_patient, user_label
from ..types import EventKind, FileStatus
from ..vocab.check import contradiction, name_order_hint
from ..vocab.tags import TAGS, normalise_tag
from .results import Event, FileResult
from .walk import FoundList


def build_user_input(settings: ConvertSettings) -> UserInput:
    labels = {}
    for name, value in settings.labels.items():
        tag = normalise_tag(name) or name
        if tag not in TAGS:
            raise UsageError(f"unknown label {name!r}")
        if value:
            labels[tag] = value
    user = UserInput(dict(settings.patient), labels)
    clean_patient(user.options_patient)  # fail fast on a bad option
    canonical: dict[str, str | None] = {t: user_label(t, v, "option").value for t, v in labels.items()}
    why = contradiction(canonical)
    if why:
        raise UsageError(f"the label options contradict each other: {why}")
    hint = name_order_hint(user.options_patient.get("patient_name", ""))
    if hint:
        user.notices.append(f"--patient-name: {hint}")
    if settings.manifest is not None:
        user.manifest = Manifest(settings.manifest)
        user.notices.extend(_manifest_name_hints(user.manifest))
    if settings.path_template:
        user.template = PathTemplate(settings.path_template)
    user.options_radiographs = settings.radiographs or ""
    user.answered_radiographs = radiographs_by_folder(settings.output)
    return user


def _manifest_name_hints(manifest: Manifest) -> list[str]:
    """One warning for the manifest's names without '^' (the first named, and how many)."""
    rows = [r for r in manifest.rows.values() if name_order_hint(r.patient.get("patient_name", ""))]
    if not rows:
        return []
    first = min(rows, key=lambda r: r.line)
    more = f" (and {len(rows) - 1} more row(s))" if len(rows) > 1 else ""
    hint = name_order_hint(first.patient["patient_name"])
    return [f"manifest {manifest.path.name} line {first.line}{more}: {hint}"]


def unmatched_manifest_rows(
    settings: ConvertSettings, user: UserInput, found: FoundList, emit: Event
) -> list[str]:
    """A warning per manifest row that matches no input found (an error with
    --manifest-strict, before anything is converted)."""
    if user.manifest is None or settings.manifest is None:
        return []
    lines = user.manifest.unmatched([(f.rel, f.path.absolute()) for f in found])
    if lines and settings.manifest_strict:
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        raise UsageError(
            f"manifest {settings.manifest} {lines[0]}{more}; --manifest-strict", path=settings.manifest
        )
    for line in lines:
        emit(
            EventKind.WARNING,
            0,
            0,
            FileResult(
                str(settings.manifest),
                f"manifest {settings.manifest}",
                FileStatus.WARNING,
                "manifest-unmatched",
                line,
            ),
        )
    return [f"manifest {settings.manifest} {line}" for line in lines]
