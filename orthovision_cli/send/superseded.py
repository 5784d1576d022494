"""Superseded instances at the destinations (issue 21): a re-run of `convert` that changed an
input's plan replaced its earlier instances (`batch/supersede.py`). `send` never sends them; per
destination it says whether one was delivered already, and with `--reject-superseded` sends that
destination an IHE IOCM rejection note (a Key Object Selection Document, "Rejected for Patient
Safety Reasons", one per study) naming the delivered ones, so the PACS can hide or delete them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..batch.state import STATE_DIR
from ..batch.supersede import SupersededRecord
from ..dicom.uids import load_or_create_secret, uid_from
from ..errors import DicomBuildError, OutputError
from .instances import Instance, NotDicom, read_instance

REJECTIONS_DIR = "rejections"
REJECTED = "rejected"  # a ledger status: a rejection note for it was stored at that destination


@dataclass
class RejectionNote:
    instance: Instance  # the note's file, under OUT/.orthovision/rejections/
    rejects: list[SupersededRecord]


def where_delivered(status: str | None) -> tuple[str, str]:
    """(reason, message) for a superseded instance at one destination, from its ledger status."""
    if status == "stored":
        return (
            "delivered",
            "superseded, but delivered to this destination earlier: the destination holds it beside "
            "its replacement (send --reject-superseded sends a rejection note)",
        )
    if status == REJECTED:
        return "rejected", "superseded; a rejection note for it was stored at this destination"
    return "not-sent", "superseded before it was sent here: never sent"


def replaced_by(rec: SupersededRecord) -> str:
    return ", ".join(r["file"] for r in rec.replaced_by) or "nothing yet"


def rejection_notes(output: Path, delivered: list[SupersededRecord]) -> tuple[list[RejectionNote], list[str]]:
    """One note per study for these delivered, superseded instances (built from the kept files'
    headers; the same set gives the same note, shared between destinations); and one line for
    each instance whose kept file is gone, so no note can name it."""
    import pydicom

    secret = load_or_create_secret(output / STATE_DIR / "uid-secret")
    by_study: dict[str, list[tuple[SupersededRecord, pydicom.Dataset]]] = defaultdict(list)
    problems: list[str] = []
    for rec in delivered:
        kept = output / rec.kept if rec.kept else None
        try:
            if kept is None:
                raise FileNotFoundError(rec.rel)
            head = pydicom.dcmread(kept, stop_before_pixels=True)
        except Exception as exc:  # gone or unreadable: this one cannot be named
            problems.append(f"{rec.rel}: no rejection note: its kept copy cannot be read ({exc})")
            continue
        by_study[str(head.get("StudyInstanceUID", ""))].append((rec, head))
    from ..dicom.iods.rejection import build_rejection_note

    notes: list[RejectionNote] = []
    folder = output / STATE_DIR / REJECTIONS_DIR
    for study_uid, items in sorted(by_study.items()):
        uids = sorted(r.sop_uid for r, _ in items)
        sop_uid = uid_from(secret, "rejection-note", study_uid, *uids)
        path = folder / f"{sop_uid}.dcm"
        rel = path.relative_to(output).as_posix()
        try:
            if not path.exists():
                note = build_rejection_note(
                    [h for _, h in items], sop_uid, uid_from(secret, "rejection-series", study_uid)
                )
                folder.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                note.save_as(tmp, enforce_file_format=True)
                tmp.replace(path)
            notes.append(RejectionNote(read_instance(path, rel), [r for r, _ in items]))
        except (DicomBuildError, NotDicom) as exc:
            problems.append(f"{rel}: no rejection note: {exc.message}")
        except OSError as exc:
            raise OutputError(
                f"cannot write the rejection note {path}: {exc.strerror or exc}", path=path
            ) from exc
    return notes, problems
