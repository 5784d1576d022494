"""What to send: the DICOM files of an output tree, known by their UIDs.

A file is taken when it is a PS3.10 file (preamble + "DICM"); the state folder, temporary files
of a running conversion and DICOMDIR media folders are left out. Headers are read without pixel
data, and only for files that are new or changed since the ledger last saw them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..batch.state import STATE_DIR
from ..defaults import TMP_PREFIX
from ..errors import InputError

DICOMDIR = "DICOMDIR"


class NotDicom(InputError):
    reason = "not-dicom"


@dataclass(frozen=True)
class Instance:
    path: Path
    rel: str
    sop_class: str
    sop_uid: str
    transfer_syntax: str
    study_uid: str
    series_uid: str
    size: int
    mtime_ns: int


def is_part10(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def read_instance(path: Path, rel: str) -> Instance:
    """The UIDs of one PS3.10 file (header only). Raises NotDicom."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        st = path.stat()
        ds = pydicom.dcmread(
            path,
            stop_before_pixels=True,
            specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"],
        )
        meta = ds.file_meta
        return Instance(
            path,
            rel,
            str(ds.SOPClassUID),
            str(ds.SOPInstanceUID),
            str(meta.TransferSyntaxUID),
            str(ds.get("StudyInstanceUID", "")),
            str(ds.get("SeriesInstanceUID", "")),
            st.st_size,
            st.st_mtime_ns,
        )
    except (OSError, InvalidDicomError, AttributeError, KeyError, ValueError) as exc:
        raise NotDicom(f"{rel}: not a readable DICOM file ({exc})", path=path) from exc


def walk_files(output: Path) -> Iterator[tuple[Path, str]]:
    """(path, rel) of candidate files under `output`, in a stable order."""
    for folder, dirs, files in os.walk(output):
        if DICOMDIR in files and Path(folder) != output:
            dirs[:] = []  # a media copy made by `orthovision dicomdir`: same UIDs, not new data
            continue
        dirs[:] = sorted(d for d in dirs if d != STATE_DIR)
        for name in sorted(files):
            if name.startswith(TMP_PREFIX) or name == DICOMDIR:
                continue
            path = Path(folder) / name
            yield path, path.relative_to(output).as_posix()
