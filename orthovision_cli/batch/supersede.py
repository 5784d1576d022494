"""Supersede: a re-run that changes an input's plan (patient, study, labels: after a manifest edit,
`--confirm`, `--force`, a person's decision) replaces its earlier instances, so that each image
exists once in the output tree (issue 21; docs/batch.md#superseded-instances).

Before the new instances are written, each earlier file of the input that is not the same
instance at the same name is linked into `OUT/.orthovision/superseded/<UTC time>/<rel>` (the send
and DICOMDIR scans never look there), and the new write may take its name. Once the new files are
durable, the earlier names are removed and the state records what was replaced and by what
(`superseded` table: `send` never sends these, and says where one was delivered already). If the
new conversion fails, the earlier files stay where they were and nothing is recorded.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OutputError
from .state import STATE_DIR, InputRecord, StateStore, from_db, to_db

SUPERSEDED_DIR = "superseded"


@dataclass
class SupersededRecord:
    """An earlier instance that a re-run replaced (its input's plan changed): where it was, where
    it is kept now (below the state folder), and the instances that replace it."""

    sop_uid: str
    input: str
    rel: str  # where it was, below OUT
    kept: str  # where it is now, below OUT
    sop_class: str
    study_uid: str
    series_uid: str
    replaced_by: list[dict[str, str]]  # {"file": rel, "sop_instance_uid": uid}

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.rel,
            "sop_instance_uid": self.sop_uid,
            "kept": self.kept,
            "replaced_by": self.replaced_by,
        }


def own_outputs(rec: InputRecord | None) -> list[str]:
    """The files written for the input of `rec`: a copy of converted content's row (`unchanged`,
    `duplicate`) names its original's, which the copy must never supersede nor keep as its own."""
    return [] if rec is None or rec.status == "unchanged" else rec.outputs


def _put(state: StateStore, rec: SupersededRecord) -> None:
    state._write(
        "INSERT OR REPLACE INTO superseded(sop_uid, input, rel, kept, sop_class, study_uid,"
        " series_uid, replaced_by, run_id, at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            rec.sop_uid,
            to_db(rec.input),
            to_db(rec.rel),
            to_db(rec.kept),
            rec.sop_class,
            rec.study_uid,
            rec.series_uid,
            json.dumps(rec.replaced_by),
            state.run_id,
            time.time(),
        ),
    )


def _rows(db: sqlite3.Connection) -> list[SupersededRecord]:
    rows = db.execute(
        "SELECT sop_uid, input, rel, kept, sop_class, study_uid, series_uid, replaced_by"
        " FROM superseded ORDER BY rel"
    ).fetchall()
    return [
        SupersededRecord(
            r[0],
            from_db(r[1]),
            from_db(r[2]),
            from_db(r[3]) or "",
            r[4] or "",
            r[5] or "",
            r[6] or "",
            json.loads(r[7] or "[]"),
        )
        for r in rows
    ]


def read_superseded(output: Path) -> list[SupersededRecord]:
    """The superseded instances of an output tree, read without the conversion's lock (`send`
    runs beside it; WAL readers never block the writer). None without a state."""
    path = output / STATE_DIR / "state.sqlite"
    if not path.exists():
        return []
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            has = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='superseded'"
            ).fetchone()
            return _rows(db) if has else []
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise OutputError(f"cannot read the state in {path.parent}: {exc}", path=path) from exc


@dataclass
class _Earlier:
    rel: str  # below OUT
    kept: str  # below OUT, in the superseded folder
    sop_uid: str
    sop_class: str
    study_uid: str
    series_uid: str


def _header(path: Path) -> tuple[str, str, str, str] | None:
    """(SOP Instance UID, SOP Class UID, Study and Series Instance UIDs) of a DICOM file, or None
    when it is not one (any more)."""
    import pydicom

    try:
        ds = pydicom.dcmread(
            path,
            stop_before_pixels=True,
            specific_tags=["SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID"],
        )
        return (
            str(ds.SOPInstanceUID),
            str(ds.get("SOPClassUID", "")),
            str(ds.get("StudyInstanceUID", "")),
            str(ds.get("SeriesInstanceUID", "")),
        )
    except Exception:  # unreadable or not DICOM: not ours to move
        return None


class Superseder:
    """One run's supersede work, in the main process (the only one that touches the state)."""

    def __init__(self, state: StateStore) -> None:
        self.state = state
        self.output = state.output
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.folder = f"{STATE_DIR}/{SUPERSEDED_DIR}/{stamp}"
        self._earlier: dict[str, list[_Earlier]] = {}
        # Whether any instance is recorded as superseded: while none is, a new instance cannot
        # be one to take off the list (no statement a file: 100,000 a first run).
        self._any = state.db.execute("SELECT 1 FROM superseded LIMIT 1").fetchone() is not None

    def prepare(self, path: str, dests: list[str], new_uids: list[str]) -> list[str]:
        """Keep a link to each earlier file of input `path` that the new plan does not write
        again as the same instance at the same name; the names the new write may replace."""
        earlier: list[_Earlier] = []
        for rel in own_outputs(self.state.get(path)):
            src = self.output / rel
            head = _header(src) if src.is_file() else None
            if head is None:
                continue
            uid, sop_class, study, series = head
            if uid in new_uids and rel in dests:
                continue  # the same instance rewritten in place
            kept = f"{self.folder}/{rel}"
            _link(src, self.output / kept)
            earlier.append(_Earlier(rel, kept, uid, sop_class, study, series))
        if earlier:
            self._earlier[path] = earlier
        return [e.rel for e in earlier]

    def finish(self, path: str, outputs: list[str], new_uids: list[str]) -> list[dict[str, Any]]:
        """The input's new instances are durable: earlier names not written again go, and each
        earlier instance with another UID is recorded as superseded. What the report lists."""
        for uid in new_uids if self._any else ():  # a plan changed back: current again
            self.state._write("DELETE FROM superseded WHERE sop_uid=?", (uid,))
        done: list[dict[str, Any]] = []
        replaced_by = [{"file": o, "sop_instance_uid": u} for o, u in zip(outputs, new_uids, strict=False)]
        for e in self._earlier.pop(path, []):
            if e.rel not in outputs:
                with contextlib.suppress(FileNotFoundError):
                    (self.output / e.rel).unlink()
                _prune(self.output / e.rel, self.output)
            if e.sop_uid in new_uids:  # the same instance under a new name: nothing to supersede
                _drop(self.output / e.kept, self.output)
                continue
            rec = SupersededRecord(
                e.sop_uid, path, e.rel, e.kept, e.sop_class, e.study_uid, e.series_uid, replaced_by
            )
            _put(self.state, rec)
            self._any = True
            done.append(rec.as_dict())
        return done

    def abandon(self, path: str) -> list[str]:
        """The input was not converted anew: its earlier files stay where they are (their kept
        links go); the names to keep in its state row."""
        for e in self._earlier.pop(path, []):
            _drop(self.output / e.kept, self.output)
        return [o for o in own_outputs(self.state.get(path)) if (self.output / o).exists()]


def _link(src: Path, dest: Path) -> None:
    """A second name for `src` in the superseded folder (a copy where links are not possible)."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
        try:
            os.link(src, dest)
        except OSError:
            shutil.copy2(src, dest)
    except OSError as exc:
        raise OutputError(
            f"cannot keep the superseded file {src} in {dest.parent}: {exc.strerror or exc}", path=dest
        ) from exc


def _drop(path: Path, root: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    _prune(path, root)


def _prune(path: Path, root: Path) -> None:
    """Remove the folders left empty above `path`, up to `root`."""
    folder = path.parent
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
