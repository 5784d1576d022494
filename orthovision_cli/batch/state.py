"""The resumable state of an output tree: `OUT/.orthovision/state.sqlite`.

Per input: its path, size, mtime, content hash, the settings it was converted with, its outputs, labels (with
confidence and source), status and error, and the plan of each converted input as JSON (`codec`; rows of
versions that stored a pickle are planned again, never unpickled): only what a later run plans with
(`plan.stored_form`, a few hundred bytes), indexed by its plan group (`plan.plan_group`), so that a run that
adds inputs reads the earlier plans of their groups only. A state of an older layout (no `plan_group`, whole
plans) is upgraded once when opened (`stored_plans.upgrade`). A re-run converts only new or changed inputs.
One run at a time per output tree (an exclusive lock file); the UID secret lives here.

Paths are whatever bytes the file system holds (a Latin-1 name on a UTF-8 system arrives as a
`surrogateescape` str): SQLite TEXT must be UTF-8, so such a value is stored as a BLOB of its exact bytes
(`to_db`) and read back to the same str (`from_db`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..dicom.plan import PlanInput, plan_group
from ..dicom.uids import load_or_create_secret
from ..errors import OutputError, StateLocked, UsageError
from .stored_plans import stored_plan, upgrade

STATE_DIR = ".orthovision"
SCHEMA = """
CREATE TABLE IF NOT EXISTS inputs (
    path TEXT PRIMARY KEY,
    rel TEXT NOT NULL,
    size INTEGER,
    mtime_ns INTEGER,
    content_hash TEXT,
    settings TEXT,
    status TEXT NOT NULL,
    reason TEXT,
    message TEXT,
    outputs TEXT,
    labels TEXT,
    plan_input BLOB,
    run_id INTEGER,
    updated REAL,
    plan_group TEXT
);
CREATE INDEX IF NOT EXISTS inputs_hash ON inputs(content_hash);
CREATE TABLE IF NOT EXISTS superseded (
    sop_uid TEXT PRIMARY KEY,
    input TEXT NOT NULL,
    rel TEXT NOT NULL,
    kept TEXT,
    sop_class TEXT,
    study_uid TEXT,
    series_uid TEXT,
    replaced_by TEXT,
    run_id INTEGER,
    at REAL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL,
    finished REAL,
    argv TEXT,
    counts TEXT
);
"""


@dataclass
class InputRecord:
    path: str
    rel: str
    size: int
    mtime_ns: int
    content_hash: str
    settings: str
    status: str
    reason: str
    message: str
    outputs: list[str]
    labels: dict[str, Any]
    plan_input: str | None  # the PlanInput as JSON (`codec`)
    # A row of an older version whose plan is a pickle: its input must be planned again.
    legacy_plan: bool = False


def lock_state_dir(output: Path, lock_name: str, busy: str) -> FileLock:
    """Create OUT's state folder and take its lock `lock_name` without waiting: a second run on
    the same output is refused at once (`busy` says why), never queued behind the first."""
    folder = output / STATE_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {folder}: {exc.strerror or exc}", path=folder) from exc
    lock = FileLock(str(folder / lock_name))
    try:
        lock.acquire(timeout=0)
    except Timeout as exc:
        raise StateLocked(busy, path=output) from exc
    return lock


def open_wal_db(path: Path, schema: str, *, threads: bool = False) -> sqlite3.Connection:
    """An autocommit SQLite database in WAL mode (readers never block the writer; a crash keeps
    every committed row), with `schema` applied. `threads`: usable from several threads."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=not threads)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(schema)
    return db


class LockedStateDb:
    """A SQLite database in OUT's state folder, held under that folder's lock: subclasses open
    both in `__enter__` (`lock_state_dir`, `open_wal_db`); leaving closes and releases them."""

    def __init__(self, output: Path):
        self.output = output
        self.dir = output / STATE_DIR
        self._lock: FileLock | None = None
        self._db: sqlite3.Connection | None = None
        self.run_id = 0

    def __exit__(self, *exc: object) -> None:
        if self._db is not None:
            # A full disk can fail the final checkpoint; the WAL stays valid for the next run.
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None


class StateStore(LockedStateDb):
    def __init__(self, output: Path, on_upgrade: Callable[[int, int], None] | None = None):
        super().__init__(output)
        self.on_upgrade = on_upgrade  # (plans done, plans) while an older state is upgraded

    def __enter__(self) -> StateStore:
        self._lock = lock_state_dir(
            self.output, "lock", f"another orthovision run is writing to {self.output}; wait for it to finish"
        )
        try:
            self._db = open_wal_db(self.dir / "state.sqlite", SCHEMA)
            upgrade(self._db, self.on_upgrade)
        except sqlite3.Error as exc:
            self.__exit__()
            raise self._failed(exc) from exc
        return self

    def _failed(self, exc: sqlite3.Error) -> OutputError:
        # A full disk shows up here as "database or disk is full": the run must stop cleanly.
        return OutputError(f"cannot update the state in {self.dir}: {exc}", path=self.dir)

    def _write(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            return self.db.execute(sql, tuple(to_db(p) for p in params))
        except sqlite3.Error as exc:
            raise self._failed(exc) from exc

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "state store used outside its context"
        return self._db

    def secret(self, shared: Path | None = None) -> bytes:
        """The UID key: `shared` (--uid-secret, several output folders) or this tree's own."""
        if shared is None:
            return load_or_create_secret(self.dir / "uid-secret")
        return shared_secret(shared)

    def last_run_finished(self) -> bool:
        """Whether the latest run recorded ended as it should (False for none: a state made
        afresh over an output that may hold anything). A run killed, or stopped by Ctrl-C, did
        not: it may have left temp files behind."""
        row = self.db.execute("SELECT finished FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        return row is not None and row[0] is not None

    def start_run(self, argv: list[str]) -> int:
        cur = self._write("INSERT INTO runs(started, argv) VALUES (?, ?)", (time.time(), json.dumps(argv)))
        self.run_id = int(cur.lastrowid or 0)
        return self.run_id

    def finish_run(self, counts: dict[str, int]) -> None:
        self._write(
            "UPDATE runs SET finished=?, counts=? WHERE id=?", (time.time(), json.dumps(counts), self.run_id)
        )

    def get(self, path: str) -> InputRecord | None:
        row = self.db.execute(
            "SELECT path, rel, size, mtime_ns, content_hash, settings, status, reason, message,"
            " outputs, labels, plan_input FROM inputs WHERE path=?",
            (to_db(path),),
        ).fetchone()
        if row is None:
            return None
        plan = row[11]
        legacy = isinstance(plan, bytes)
        return _record(row, None if legacy else plan, legacy)

    def done_by_hash(self, content_hash: str, settings: str) -> InputRecord | None:
        row = self.db.execute(
            "SELECT path FROM inputs WHERE content_hash=? AND settings=? AND status='done'",
            (content_hash, settings),
        ).fetchone()
        return self.get(from_db(row[0])) if row else None

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """The puts inside as one transaction (one WAL commit, issue 25). A crash, or a commit that
        fails (a full disk: rolled back, the error raised), loses these rows only: their files stand,
        and a re-run replaces them as its own (same SOP Instance UIDs)."""
        if self.db.in_transaction:  # inside another: its commit is theirs
            yield
            return
        self._write("BEGIN", ())
        try:
            yield
        finally:
            try:
                self._write("COMMIT", ())
            finally:
                if self.db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self.db.execute("ROLLBACK")

    def put(
        self,
        *,
        path: str,
        rel: str,
        size: int,
        mtime_ns: int,
        content_hash: str,
        settings: str,
        status: str,
        reason: str = "",
        message: str = "",
        outputs: list[str] | None = None,
        labels: dict[str, Any] | None = None,
        plan_input: PlanInput | None = None,
    ) -> None:
        plan = stored_plan(plan_input, path, rel, content_hash) if plan_input is not None else None
        group = plan_group(plan_input) if plan_input is not None else None
        self._write(
            "INSERT OR REPLACE INTO inputs(path, rel, size, mtime_ns, content_hash, settings, status,"
            " reason, message, outputs, labels, plan_input, run_id, updated, plan_group)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                path,
                rel,
                size,
                mtime_ns,
                content_hash,
                settings,
                status,
                reason,
                message,
                json.dumps(outputs or [], separators=(",", ":")),
                json.dumps(labels or {}, separators=(",", ":")),
                plan,
                self.run_id,
                time.time(),
                group,
            ),
        )

    def done_rows(self) -> Iterator[tuple[str, str, str, int, int, str, int, str, str]]:
        """(path, status, settings, size, mtime_ns, outputs, legacy plan (1: a pickle), content
        hash, labels) of every finished input and every duplicate of one, its lists as the JSON
        text stored (ASCII): what a re-run compares with what it found, and an unchanged input's
        report line (issue 25: 100,000 rows a nightly run, each read once)."""
        cols = (
            "SELECT path, status, ifnull(settings, ''), ifnull(size, 0), ifnull(mtime_ns, 0),"
            " ifnull(outputs, '[]'), typeof(plan_input) = 'blob', ifnull(content_hash, ''),"
            " ifnull(labels, '{}') FROM inputs"
            " WHERE (status='done' OR (status='unchanged' AND reason='duplicate'))"
        )
        # The rows as SQLite gives them (no step of ours a row), then those whose path is stored
        # as bytes (a name that is not UTF-8: few), with the path as its str.
        texts = self.db.execute(cols + " AND typeof(path) = 'text'")
        blobs = self.db.execute(cols + " AND typeof(path) = 'blob'")
        return itertools.chain(texts, ((from_db(p), *rest) for p, *rest in blobs))

    def records_with_reason(self, reason: str) -> dict[str, InputRecord]:
        """Failed inputs with this reason (e.g. `worker-crashed`), by path."""
        rows = self.db.execute(
            "SELECT path FROM inputs WHERE status='failed' AND reason=?", (reason,)
        ).fetchall()
        return {from_db(p): rec for (p,) in rows if (rec := self.get(from_db(p))) is not None}

    def done_in_groups(
        self, groups: Iterable[str]
    ) -> Iterator[tuple[str, str, str, str | bytes | None, int]]:
        """(path, rel, content hash, stored plan, run) of each converted input of these plan groups
        (by the index, a query per 500 groups), then of each converted input without a group: a
        row whose plan could not be read when the state was upgraded, or a legacy pickle (its run
        warns)."""
        ordered = sorted(set(groups))
        for i in range(0, len(ordered), 500):
            chunk = ordered[i : i + 500]
            marks = ",".join("?" * len(chunk))
            yield from (
                (from_db(p), from_db(r), h or "", plan, run or 0)
                for p, r, h, plan, run in self.db.execute(
                    "SELECT path, rel, content_hash, plan_input, run_id FROM inputs"
                    f" WHERE plan_group IN ({marks}) AND status='done'",
                    chunk,
                )
            )
        for p, r, h, plan, run in self.db.execute(
            "SELECT path, rel, content_hash, plan_input, run_id FROM inputs"
            " WHERE plan_group IS NULL AND status='done'"
        ):
            yield from_db(p), from_db(r), h or "", plan, run or 0

    def groups_besides(self, prefix: str, groups: Iterable[str]) -> int:
        """How many plan groups starting with `prefix` the state holds besides `groups` (a
        range of the index, never the plans)."""
        (total,) = self.db.execute(
            "SELECT COUNT(DISTINCT plan_group) FROM inputs WHERE plan_group >= ? AND plan_group < ?",
            (prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)),
        ).fetchone()
        mine = sorted(g for g in set(groups) if g.startswith(prefix))
        for i in range(0, len(mine), 500):
            chunk = mine[i : i + 500]
            marks = ",".join("?" * len(chunk))
            (held,) = self.db.execute(
                f"SELECT COUNT(DISTINCT plan_group) FROM inputs WHERE plan_group IN ({marks})", chunk
            ).fetchone()
            total -= held
        return int(total)

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM inputs GROUP BY status").fetchall())


def _record(row: tuple[Any, ...], plan: str | None, legacy: bool) -> InputRecord:
    """An `inputs` row (path, rel, size, mtime_ns, content_hash, settings, status, reason,
    message, outputs, labels, ...) as a record; NULLs read as empty."""
    return InputRecord(
        from_db(row[0]),
        from_db(row[1]),
        row[2] or 0,
        row[3] or 0,
        row[4] or "",
        row[5] or "",
        row[6],
        row[7] or "",
        from_db(row[8] or ""),
        json.loads(row[9]) if row[9] else [],
        json.loads(row[10]) if row[10] else {},
        plan,
        legacy,
    )


def to_db(value: Any) -> Any:
    """A str SQLite can hold as TEXT stays one; a str with `surrogateescape` bytes (a file name
    that is not UTF-8) becomes a BLOB of exactly those bytes. Equal strs give equal values, so
    lookups by path still match."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape")
    return value


def from_db(value: Any) -> Any:
    """`to_db` undone: a BLOB path or message read back as the str it was."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def shared_secret(path: Path) -> bytes:
    """The key of `--uid-secret FILE`: read, or created once (mode 0600) when missing."""
    try:
        if path.exists() and len(path.read_bytes()) < 16:
            raise UsageError(f"--uid-secret {path}: fewer than 16 bytes; not a key this tool made")
        return load_or_create_secret(path)
    except OSError as exc:
        raise UsageError(f"--uid-secret {path}: {exc.strerror or exc}", path=path) from exc
