"""A nightly run's triage, done by a second process beside the walk (issue 25: a re-run over
100,000 converted inputs walks 100,000 files on one core, then reads 100,000 state rows, stats
100,000 outputs and makes 100,000 report lines, while the other core idles).

While the main process walks, the child reads the state (SQLite lets a reader in beside the
writer) and keeps, for each converted input whose outputs are all there, what its report line
needs. The walk done, the main process sends what it found (`ask`); the child answers twice:
first the inputs the state has never seen (`never_seen`: the workers analyse them at once), then
the inputs unchanged since they were converted, with their report lines, and the inputs recorded
as copies of converted content, which the main process judges itself (`unchanged`). Where it
cannot answer (no second core, no interpreter to start, it failed or answered wrong), the main
process does the same itself (`resume.triage`): the answer is the same either way, and tests hold
the two to it. Light on purpose: the child imports this module and the standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import sqlite3
import struct
import subprocess
import sys
from array import array
from json.encoder import encode_basestring_ascii
from pathlib import Path
from typing import IO, Any, Protocol

# Rows (the state's highest row id) from which a second process pays: below, the work costs
# less than starting an interpreter (about 30 ms).
APART_FROM = 5000
END = b"end\n"
DB_FILE = "state.sqlite"  # in the state's folder
# The converted inputs with these settings and a current plan (not a pickle), what their report
# lines need; the others' paths; the copies of converted content.
DONE = (
    "SELECT path, ifnull(size, 0), ifnull(mtime_ns, 0), ifnull(outputs, '[]'), ifnull(content_hash, ''),"
    " ifnull(labels, '{}') FROM inputs"
    " WHERE ifnull(status, '') = 'done' AND ifnull(settings, '') = ? AND typeof(plan_input) != 'blob'"
)
OTHERS = (
    "SELECT path, status = 'unchanged' AND reason = 'duplicate' FROM inputs"
    " WHERE NOT (ifnull(status, '') = 'done' AND ifnull(settings, '') = ? AND typeof(plan_input) != 'blob')"
)
_FRAME = struct.Struct("<Q")  # each message: its length, then its bytes

# What the main process sends: the found inputs as FoundList's columns (paths, where each rel
# starts in its path, sizes, times), the rel and usability of those kept whole (`odd`), and how
# many never-seen inputs it wants.
Columns = tuple[list[str], array, array, array, dict[int, tuple[str, bool]]]
# The second answer: the unchanged inputs' indices (ascending), their rels, the length of each
# one's report line (the child wrote the lines into the run's log file from its start), and the
# indices of inputs recorded as duplicates (the main process judges those).
Unchanged = tuple[array, list[str], array, list[int]]


def output_list(text: str) -> list[str]:
    """The state's JSON list of output paths, read without the JSON decoder where it is plain
    (no escape, no quote in a name: then it is exactly the text between the quotes)."""
    if text.startswith('["') and text.endswith('"]') and "\\" not in text:
        if text.count('"') == 2:  # one output, the usual
            return [text[2:-2]]
        parts = text[2:-2].split('","')
        if not any('"' in part for part in parts):
            return parts
    return list(json.loads(text))


def all_there(base: str, outputs: list[str]) -> bool:
    """Whether each output (relative to `base`, which ends in a separator) exists, as
    `os.path.exists` says (a link: its target), without its call and its stat result a path
    (100,000 a nightly run)."""
    try:
        return all(os.access(o if o.startswith("/") else base + o, os.F_OK) for o in outputs)
    except ValueError:  # a NUL in a name
        return False


def unchanged_bytes(path: str, rel: str, content_hash: str, outputs_json: str, labels_json: str) -> bytes:
    """The report line of an input unchanged since it was converted (`outputs_json`,
    `labels_json`: the state's ASCII JSON text)."""
    return _unchanged_text(path, rel, content_hash, outputs_json, labels_json).encode("ascii")


def _unchanged_text(path: str, rel: str, content_hash: str, outputs_json: str, labels_json: str) -> str:
    # Strings quoted as `json.dumps` quotes them (ensure_ascii), by its C function: a re-run makes
    # 100,000 of these lines.
    q = encode_basestring_ascii  # what json.dumps(str) returns
    return (
        f'{{"input": {q(path)}, "rel": {q(rel)}, "sha256": {q(content_hash)}, '
        f'"status": "unchanged", "reason": "", "message": "", "outputs": {outputs_json}, '
        f'"labels": {labels_json}, "seconds": 0.0, "warnings": []}}\n'
    )


def same_file(path: str, seen: tuple[int, int], size: int, mtime_ns: int) -> bool:
    """The file's size and modification time are those recorded, as the walk saw them (`seen`;
    -1: not known, then stat'ed now; unreadable: not the same)."""
    if seen[0] >= 0:
        return seen == (size, mtime_ns)
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_size == size and st.st_mtime_ns == mtime_ns


class OutputCheck:
    """The child, asked once (`ask`), answering twice (`never_seen`, then `unchanged`). Each
    answer is None where the child cannot give it (then the caller works it out itself)."""

    def __init__(self, proc: subprocess.Popen[bytes], rows: int = 0) -> None:
        self._proc: subprocess.Popen[bytes] | None = proc
        self.rows = rows  # the state's rows when it started: more inputs found are new ones
        self._asked = False
        self._seen: list[int] | None = None

    def ask(self, columns: Columns, limit: int) -> None:
        """Send the found inputs (`FoundList.columns`); at most `limit` never-seen ones wanted."""
        proc = self._proc
        if proc is None or self._asked:
            return
        self._asked = True
        try:
            assert proc.stdin is not None
            _send(proc.stdin, pickle.dumps((columns, limit), protocol=pickle.HIGHEST_PROTOCOL))
            proc.stdin.close()
        except (OSError, ValueError):  # the child is gone: no answer
            self.stop()
        except BaseException:
            self.stop()
            raise

    def never_seen(self) -> list[int] | None:
        """The indices of the found inputs (without a problem) with no state row at all, in their
        order, at most the limit asked."""
        got = self._read()
        if got is None or not isinstance(got, list):
            self.stop()
            return None
        self._seen = got
        return got

    def unchanged(self) -> Unchanged | None:
        """The unchanged inputs (indices, rels, the lengths of the lines written into the log)
        and the duplicates to judge."""
        if self._seen is None and self.never_seen() is None:
            return None
        got = self._read()
        proc = self._proc
        ok = isinstance(got, tuple) and len(got) == 4 and proc is not None and proc.stdout is not None
        if ok:
            assert proc is not None and proc.stdout is not None
            ok = proc.stdout.read() == END and proc.wait() == 0
        self.stop()
        if not ok:
            return None
        indices, rels, lengths, twins = got
        return (indices, rels, lengths, twins) if len(indices) == len(rels) == len(lengths) else None

    def _read(self) -> Any:
        proc = self._proc
        if proc is None or not self._asked or proc.stdout is None:
            return None
        try:
            head = proc.stdout.read(_FRAME.size)
            if len(head) != _FRAME.size:
                return None
            (n,) = _FRAME.unpack(head)
            data = proc.stdout.read(n)
            return pickle.loads(data) if len(data) == n else None
        except (OSError, ValueError, pickle.UnpicklingError, EOFError):
            return None
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Done with, or not asked (nothing found, the run stopped): not left running."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            for f in (proc.stdin, proc.stdout):
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()
            proc.wait()

    def __del__(self) -> None:
        self.stop()


def _send(f: IO[bytes], data: bytes) -> None:
    f.write(_FRAME.pack(len(data)))
    f.write(data)
    f.flush()


class State(Protocol):
    """What `start` needs of the run's state (`state.StateStore`)."""

    @property
    def db(self) -> sqlite3.Connection: ...

    dir: Path


def start(state: State, output: Path, key: str, log_fd: int) -> OutputCheck | None:
    """The child for the state (`dir`, its connection `db`) and the settings `key`, started
    beside the caller, or None where it would not pay (a small state, a single core) or cannot
    start. `log_fd`: the run's log file (`ResultLog.fileno`, empty), where the child writes the
    unchanged inputs' report lines."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cores < 2:
        return None
    try:
        (rows,) = state.db.execute("SELECT count(*) FROM inputs").fetchone()  # an index's count
        if rows < APART_FROM:
            return None
        # -S (no site: a faster start), with this package's folder on the path in its place; -P:
        # not the working folder first (a checkout of another version there would answer)
        paths = [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-S",
                "-P",
                "-m",
                __name__,
                str(state.dir / DB_FILE),
                os.path.join(output, ""),
                key,
                str(log_fd),
            ],
            pass_fds=(log_fd,),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    except (OSError, sqlite3.Error):
        return None
    return OutputCheck(proc, rows)


class _Rows:
    """What the child keeps of the state: every input's path (the never-seen ones are those
    without), and for each converted input with these settings, a current plan and every
    output there, what its report line needs; the inputs recorded as duplicates."""

    def __init__(self, db: sqlite3.Connection, base: str, key: str) -> None:
        self.done: dict[str, tuple[int, int, str, str, str]] = {}
        self.others: set[str] = set()  # every other input's path: the never-seen have no row
        self.dups: set[str] = set()
        labels_seen: dict[str, str] = {}  # one string for labels that repeat (most do)
        for path, size, mtime_ns, outputs, sha, labels in db.execute(DONE, (key,)):
            if isinstance(path, bytes):  # a name that is not UTF-8 (state.to_db)
                path = path.decode("utf-8", "surrogateescape")
            if all_there(base, output_list(outputs)):
                self.done[path] = (size, mtime_ns, sha, outputs, labels_seen.setdefault(labels, labels))
            else:
                self.others.add(path)
        for path, dup in db.execute(OTHERS, (key,)):
            if isinstance(path, bytes):
                path = path.decode("utf-8", "surrogateescape")
            self.others.add(path)
            if dup:
                self.dups.add(path)

    def never_seen(self, columns: Columns, limit: int) -> list[int]:
        paths, rel_at, _, _, odd = columns
        done, others, out = self.done, self.others, []
        for i, path in enumerate(paths):
            if path not in done and path not in others and (rel_at[i] >= 0 or odd[i][1]):
                out.append(i)
                if len(out) >= limit:
                    break
        return out

    def unchanged(self, columns: Columns, log_fd: int) -> Unchanged:
        paths, rel_at, sizes, mtimes, odd = columns
        done, dups, text = self.done, self.dups, _unchanged_text
        indices, lengths = array("q"), array("q")
        rels: list[str] = []
        lines: list[str] = []  # ASCII: encoded a batch at a time
        twins: list[int] = []
        out = _Lines(log_fd)  # written 4,096 at a time: never all held (50 MB at 100,000)
        for i, path in enumerate(paths):
            row = done.get(path)
            if row is None:
                if path in dups and (rel_at[i] >= 0 or odd[i][1]):
                    twins.append(i)
                continue
            at = rel_at[i]
            if at < 0 and not odd[i][1]:
                continue  # found with a problem
            size, mtime_ns, sha, outputs, labels = row
            seen = sizes[i]
            if seen >= 0:  # as the walk saw it (same_file, spelt out: 100,000 a nightly run)
                if seen != size or mtimes[i] != mtime_ns:
                    continue
            elif not same_file(path, (seen, mtimes[i]), size, mtime_ns):
                continue
            rel = path[at:] if at >= 0 else odd[i][0]
            line = text(path, rel, sha, outputs, labels)
            indices.append(i)
            rels.append(rel)
            lines.append(line)
            lengths.append(len(line))
            if len(lines) >= 4096:
                out.add(lines)
        out.add(lines)
        return indices, rels, lengths, twins


class _Lines:
    """Report lines written into the run's log file (`fd`) from its start."""

    def __init__(self, fd: int) -> None:
        self.fd, self.size = fd, 0

    def add(self, lines: list[str]) -> None:
        data = "".join(lines).encode("ascii")
        lines.clear()
        view = memoryview(data)
        while view:  # a regular file: all at once but for a signal
            view = view[os.pwrite(self.fd, view, self.size + len(data) - len(view)) :]
        self.size += len(data)


def main(argv: list[str]) -> int:
    db_path, base, key, log_fd = argv
    db = sqlite3.connect(f"{Path(db_path).resolve().as_uri()}?mode=ro", uri=True)
    rows = _Rows(db, base, key)  # while the main process walks
    db.close()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    head = stdin.read(_FRAME.size)
    if len(head) != _FRAME.size:
        return 0  # not asked: the walk found nothing, or the run stopped
    columns, limit = pickle.loads(stdin.read(_FRAME.unpack(head)[0]))
    _send(stdout, pickle.dumps(rows.never_seen(columns, limit), protocol=pickle.HIGHEST_PROTOCOL))
    _send(stdout, pickle.dumps(rows.unchanged(columns, int(log_fd)), protocol=pickle.HIGHEST_PROTOCOL))
    stdout.write(END)
    stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
