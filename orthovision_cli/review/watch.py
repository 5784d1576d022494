"""`orthovision watch INBOX -o OUT`: a hot folder.

Every `interval` seconds the inbox is walked (as `convert` walks it). A file is taken only when
its size and modification time have stayed the same for `settle` seconds, so a copy in progress
(an SD card's DCIM tree being copied, a scanner writing a TIFF) is never read half-written.
Settled files that the state has not seen in this size and time, and files awaiting review
that a person has decided since, are converted by the ordinary batch (`run_convert` with
`only=`): same state, names, review list, reports and crash safety as `convert`. A kill -9 at any
moment loses nothing: the next start walks again and converts what the state lacks.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from ..answers import Answer, AnswerBook
from ..batch.runner import Event, RunSummary, run_convert
from ..batch.state import STATE_DIR, from_db
from ..batch.walk import find_inputs
from ..config import ConvertSettings
from ..decisions import load as load_decisions
from ..errors import ExitCode, StateLocked
from .apply import remember


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float  # monotonic time these values were first seen


class HotFolder:
    def __init__(
        self,
        settings: ConvertSettings,
        settle: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        convert: Callable[..., RunSummary] = run_convert,
    ):
        """`convert` runs one batch (`run_convert`'s signature); `watch --send` wraps it."""
        settings.validate()
        self.convert = convert
        assert settings.output is not None
        self.settings = settings
        self.output = settings.output
        self.roots = [p.absolute() for p in settings.inputs]
        self.settle = settle
        self.clock = clock
        self.seen: dict[str, _Seen] = {}
        # What this process handed to a run, in which size and time: a file the state keeps no
        # row for (a duplicate of another) is not analysed again at every look.
        self.tried: dict[str, tuple[int, int]] = {}
        # The batch answer (answers.py) each file awaiting review was tried with: once each.
        self.answered: dict[str, Answer] = {}
        self.waiting = 0  # files seen but not settled at the last look
        self.files = 0  # image candidates seen at the last look

    def look(self) -> list[str]:
        """Walk the inbox; the files whose size and mtime have not moved for `settle` seconds."""
        now = self.clock()
        found = find_inputs(self.roots, self.settings.include, self.settings.exclude, skip_dirs=[self.output])
        settled, current = [], {}
        for f in found:
            if f.problem:
                continue
            try:
                st = f.path.stat()
            except OSError:
                continue
            key = str(f.path)
            prev = self.seen.get(key)
            if prev is None or (prev.size, prev.mtime_ns) != (st.st_size, st.st_mtime_ns):
                prev = _Seen(st.st_size, st.st_mtime_ns, now)
            current[key] = prev
            if now - prev.since >= self.settle:
                settled.append(key)
        self.seen = current  # deleted files are forgotten
        self.files = len(current)
        self.waiting = len(current) - len(settled)
        return settled

    def due(self, settled: list[str]) -> set[str]:
        """Settled files with work to do: new or changed since the state saw them, or decided."""
        known = _state_rows(self.output)
        decisions = load_decisions(self.output)
        answers = AnswerBook(self.output)
        out = set()
        for path in settled:
            rec = known.get(path)
            seen = self.seen[path]
            if (
                rec is not None
                and rec[2] == "review"
                and (d := decisions.get(path)) is not None
                and d.sha256 == rec[3]
            ):
                out.add(path)  # a person decided it since
            elif (
                rec is not None
                and rec[2] == "review"
                and (a := answers.radiographs_for(path)) is not None
                and self.answered.get(path) != a
            ):
                out.add(path)  # a person answered film or digital for its folder since
                self.answered[path] = a
            elif self.tried.get(path) == (seen.size, seen.mtime_ns):
                continue
            elif rec is None or (rec[0], rec[1]) != (seen.size, seen.mtime_ns):
                out.add(path)
        return out

    def run_once(self, on_event: Event | None = None, argv: list[str] | None = None) -> RunSummary | None:
        """Convert what has settled and is due; None when there was nothing to do."""
        todo = self.due(self.look())
        if not todo:
            return None
        summary = self.convert(self.settings, on_event, argv=argv, only=todo)
        for path in todo:
            self.tried[path] = (self.seen[path].size, self.seen[path].mtime_ns)
        remember(self.settings)
        return summary


def _state_rows(output: Path) -> dict[str, tuple[int, int, str, str]]:
    """path -> (size, mtime_ns, status, content hash), read without taking the run lock."""
    db_path = output / STATE_DIR / "state.sqlite"
    if not db_path.exists():
        return {}
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            rows = db.execute("SELECT path, size, mtime_ns, status, content_hash FROM inputs").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return {}
    return {from_db(r[0]): (r[1] or 0, r[2] or 0, r[3] or "", r[4] or "") for r in rows}


class Stop(Exception):
    """SIGINT or SIGTERM arrived."""


@contextlib.contextmanager
def stop_signals() -> Iterator[list[int]]:
    """SIGTERM behaves as SIGINT: a conversion in progress stops as `convert` does on Ctrl-C
    (workers shut down, what was finished is recorded), an idle wait ends at once. Yields the
    signals received, so the exit code can tell a person's Ctrl-C from a service manager's stop."""
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, handler)
    old_int = signal.signal(signal.SIGINT, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)


def watch(
    folder: HotFolder,
    *,
    interval: float,
    once: bool,
    on_event: Event | None = None,
    on_run: Callable[[RunSummary], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
    argv: list[str] | None = None,
) -> ExitCode:
    """Loop (or, with `once`, look twice `settle` apart and convert what settled).

    Exit code: with `once`, that of the run as `convert` gives it (0 when there was nothing to
    do, 3 when the inbox holds no file at all); otherwise 130 after Ctrl-C (SIGINT) or when a
    stop interrupted a run, 0 after SIGTERM between runs (a service manager's normal stop).
    """
    with stop_signals() as received:
        if once:
            folder.look()
            time.sleep(folder.settle)
            try:
                summary = folder.run_once(on_event, argv)
            except StateLocked as exc:
                if on_wait:
                    on_wait(exc.message)
                return ExitCode.FATAL
            if summary is None:
                return ExitCode.OK if folder.files else ExitCode.NOTHING_FOUND
            if on_run:
                on_run(summary)
            return summary.exit_code
        running = False
        try:
            while True:
                running = True
                try:
                    summary = folder.run_once(on_event, argv)
                except StateLocked as exc:
                    summary = None
                    if on_wait:
                        on_wait(exc.message)
                running = False
                if summary is not None and on_run:
                    on_run(summary)
                time.sleep(interval)
        except KeyboardInterrupt:
            by_term = bool(received) and received[-1] == signal.SIGTERM
            return ExitCode.OK if by_term and not running else ExitCode.INTERRUPTED
