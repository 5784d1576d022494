"""The instances of an output tree, their headers read once (cached in the ledger by size and
mtime): what `send` and `dicomdir` work on."""

from __future__ import annotations

from pathlib import Path

from .instances import Instance, NotDicom, is_part10, read_instance, walk_files
from .ledger import Ledger


def find_files(output: Path) -> list[tuple[Path, str]]:
    """(path, rel) of every PS3.10 file under `output`, headers not read (`dicomdir` reads each
    one once itself)."""
    return [(path, rel) for path, rel in walk_files(output) if is_part10(path)]


def find_instances(output: Path, ledger: Ledger) -> tuple[list[Instance], list[str]]:
    """Every instance under `output` (headers read once, cached by size and mtime), and one-line
    reasons for the DICOM-looking files that could not be read. One instance per SOP Instance
    UID: a second file with the same UID (a copy) is left out."""
    found: list[Instance] = []
    bad: list[str] = []
    uids: set[str] = set()
    for path, rel in walk_files(output):
        try:
            st = path.stat()
        except OSError:
            continue
        hit = ledger.cached(rel, st.st_size, st.st_mtime_ns)
        if hit is not None:
            inst = Instance(path, rel, *hit, size=st.st_size, mtime_ns=st.st_mtime_ns)
        elif is_part10(path):
            try:
                inst = read_instance(path, rel)
            except NotDicom as exc:
                bad.append(exc.one_line())
                continue
            ledger.cache(inst)
        else:
            continue
        if inst.sop_uid not in uids:
            uids.add(inst.sop_uid)
            found.append(inst)
    return found, bad
