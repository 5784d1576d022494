"""A PS3.10 File-set for media (USB stick, CD/DVD): a DICOMDIR and IDs-only file names.

pydicom's FileSet builds the PATIENT/STUDY/SERIES/IMAGE records and the `PT000000/ST000000/
SE000000/IM000000` names (8-character components, as PS3.10 and PS3.12 require). The File-set is
written into a temporary folder beside the target and moved into place, so an interrupted run
never leaves a half-written DICOMDIR (the next run deletes what a killed one left beside the
target); an earlier File-set at the target is replaced. One `dicomdir` at a time per target.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OutputError, UsageError
from .instances import DICOMDIR, Instance
from .media_keys import image_leaf, invent_keys

FILESET_ID = "ORTHOVISION"


@dataclass
class MediaSummary:
    folder: Path
    added: int = 0
    patients: int = 0
    studies: int = 0
    skipped: list[str] = field(default_factory=list)  # one line per instance left out
    # Record keys invented where instances lack them (media_keys), one line per value.
    invented: list[str] = field(default_factory=list)


def write_fileset(
    instances: Iterable[Instance],
    folder: Path,
    *,
    fileset_id: str = FILESET_ID,
    patient_ids: Iterable[str] = (),
) -> MediaSummary:
    from pydicom import dcmread
    from pydicom.fileset import FileSet

    if len(fileset_id) > 16 or not fileset_id.replace("_", "").replace(" ", "").isalnum():
        raise UsageError(f"--fileset-id {fileset_id!r}: at most 16 letters, digits, spaces or _")
    if folder.exists() and any(folder.iterdir()) and not (folder / DICOMDIR).is_file():
        raise UsageError(f"{folder} exists and is not a File-set written by orthovision; choose another --to")
    wanted = set(patient_ids)
    summary = MediaSummary(folder)
    fs = FileSet()
    fs.ID = fileset_id.upper()
    patients: set[str] = set()
    studies: set[str] = set()
    invented: dict[str, None] = {}  # in order, once each
    for inst in instances:
        try:
            ds = dcmread(inst.path)
            keyed, made = invent_keys(ds)
            if wanted and str(keyed.get("PatientID", "")) not in wanted:
                continue
            fs.add_custom(ds, image_leaf(ds, keyed))
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            summary.skipped.append(f"{inst.rel}: left out of the File-set: {_our_words(exc)}")
            continue
        invented.update(dict.fromkeys(made))
        summary.added += 1
        patients.add(str(keyed.get("PatientID", "")))
        studies.add(inst.study_uid)
    summary.invented = list(invented)
    summary.patients, summary.studies = len(patients), len(studies)
    if not summary.added:
        return summary
    parent = folder.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for stale in parent.glob(".orthovision-media-*"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=".orthovision-media-", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot write in {parent}: {exc.strerror or exc}", path=parent) from exc
    try:
        fs.write(tmp)
        _fsync_tree(tmp)
        old = None
        if folder.exists():
            old = parent / f"{tmp.name}-old"
            folder.rename(old)
        tmp.rename(folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(
            f"cannot write the File-set to {folder}: {exc.strerror or exc}", path=folder
        ) from exc
    return summary


def _our_words(exc: BaseException) -> str:
    """pydicom's reason without its advice to programmers (which record function to define)."""
    text = " ".join(str(exc).split())
    return text.split(". See DICOM", 1)[0].split(". Either", 1)[0] or type(exc).__name__


def _fsync_tree(root: Path) -> None:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
