"""What each destination confirmed: `OUT/.orthovision/send.sqlite`.

One row per (SOP Instance UID, destination) with the last status (`stored` only when the peer
confirmed it, with a success or warning status), the DIMSE/HTTP status code and a one-line reason.
A re-run sends what has no `stored` row. Rows are written as results arrive, so a kill leaves at
worst instances that were stored but not yet recorded: they are sent again, which a PACS takes as
the same instance (same SOP Instance UID), never as a new one.

A second table caches each file's UIDs by (size, mtime), so a re-run over 100,000 files reads no
headers. One send run at a time per output tree (a lock file beside the database).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..batch.state import LockedStateDb, lock_state_dir, open_wal_db
from ..errors import OutputError
from .instances import Instance

SCHEMA = """
CREATE TABLE IF NOT EXISTS sent (
    sop_uid TEXT NOT NULL,
    destination TEXT NOT NULL,
    rel TEXT,
    status TEXT NOT NULL,
    code INTEGER,
    reason TEXT,
    message TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_id INTEGER,
    updated REAL,
    PRIMARY KEY (sop_uid, destination)
);
CREATE TABLE IF NOT EXISTS files (
    rel TEXT PRIMARY KEY,
    size INTEGER,
    mtime_ns INTEGER,
    sop_class TEXT,
    sop_uid TEXT,
    transfer_syntax TEXT,
    study_uid TEXT,
    series_uid TEXT
);
CREATE TABLE IF NOT EXISTS send_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL,
    finished REAL,
    argv TEXT,
    counts TEXT
);
"""

STORED = "stored"
FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    """What one destination said about one instance."""

    status: str  # stored or failed
    code: int | None = None  # DIMSE status or HTTP status
    reason: str = ""  # stable reason code, e.g. stored-warning, refused, connection-lost
    message: str = ""  # one line for a person

    @property
    def stored(self) -> bool:
        return self.status == STORED


class Ledger(LockedStateDb):
    def __init__(self, output: Path) -> None:
        super().__init__(output)
        self._mutex = threading.Lock()  # senders record from their own threads

    def __enter__(self) -> Ledger:
        self._lock = lock_state_dir(
            self.output, "send.lock", f"another orthovision send is running on {self.output}; wait for it"
        )
        try:
            self._db = open_wal_db(self.dir / "send.sqlite", SCHEMA, threads=True)
        except sqlite3.Error as exc:
            self.__exit__()
            raise OutputError(f"cannot open the send ledger in {self.dir}: {exc}", path=self.dir) from exc
        return self

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "ledger used outside its context"
        return self._db

    def _write(self, sql: str, params: tuple[object, ...]) -> sqlite3.Cursor:
        with self._mutex:
            try:
                return self.db.execute(sql, params)
            except sqlite3.Error as exc:
                raise OutputError(
                    f"cannot update the send ledger in {self.dir}: {exc}", path=self.dir
                ) from exc

    def start_run(self, argv: list[str]) -> int:
        cur = self._write("INSERT INTO send_runs(started, argv) VALUES (?, ?)", (time.time(), " ".join(argv)))
        self.run_id = int(cur.lastrowid or 0)
        return self.run_id

    def finish_run(self, counts: str) -> None:
        self._write(
            "UPDATE send_runs SET finished=?, counts=? WHERE id=?", (time.time(), counts, self.run_id)
        )

    # -- results

    def stored_uids(self, destination: str) -> set[str]:
        with self._mutex:
            rows = self.db.execute(
                "SELECT sop_uid FROM sent WHERE destination=? AND status=?", (destination, STORED)
            ).fetchall()
        return {r[0] for r in rows}

    def record(self, inst: Instance, destination: str, outcome: Outcome) -> None:
        self._write(
            "INSERT INTO sent(sop_uid, destination, rel, status, code, reason, message, attempts,"
            " run_id, updated) VALUES (?,?,?,?,?,?,?,1,?,?)"
            " ON CONFLICT(sop_uid, destination) DO UPDATE SET rel=excluded.rel,"
            " status=excluded.status, code=excluded.code, reason=excluded.reason,"
            " message=excluded.message, attempts=sent.attempts+1, run_id=excluded.run_id,"
            " updated=excluded.updated",
            (
                inst.sop_uid,
                destination,
                inst.rel,
                outcome.status,
                outcome.code,
                outcome.reason,
                outcome.message,
                self.run_id,
                time.time(),
            ),
        )

    def forget(self, destination: str, sop_uids: Iterable[str]) -> None:
        """The destination no longer holds these (seen by --verify): send them again."""
        for uid in sop_uids:
            self._write("DELETE FROM sent WHERE destination=? AND sop_uid=?", (destination, uid))

    def rows(self, destination: str) -> dict[str, tuple[str, str, int]]:
        """sop_uid -> (status, reason, attempts), for tests and reports."""
        with self._mutex:
            got = self.db.execute(
                "SELECT sop_uid, status, reason, attempts FROM sent WHERE destination=?", (destination,)
            ).fetchall()
        return {r[0]: (r[1], r[2] or "", r[3]) for r in got}

    # -- header cache

    def cached(self, rel: str, size: int, mtime_ns: int) -> tuple[str, str, str, str, str] | None:
        with self._mutex:
            row = self.db.execute(
                "SELECT sop_class, sop_uid, transfer_syntax, study_uid, series_uid FROM files"
                " WHERE rel=? AND size=? AND mtime_ns=?",
                (rel, size, mtime_ns),
            ).fetchone()
        return (row[0], row[1], row[2], row[3], row[4]) if row else None

    def cache(self, inst: Instance) -> None:
        self._write(
            "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?)",
            (
                inst.rel,
                inst.size,
                inst.mtime_ns,
                inst.sop_class,
                inst.sop_uid,
                inst.transfer_syntax,
                inst.study_uid,
                inst.series_uid,
            ),
        )
