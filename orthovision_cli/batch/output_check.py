"""Whether each converted input's outputs are still there, asked of a second process while the
walk goes on (issue 25: a nightly run over 100,000 converted inputs stats 100,000 outputs, and
the walk keeps one core busy while the other idles).

The child reads the state (SQLite lets a reader in beside the writer) and prints the row id of
each converted input with an output missing, then "end". Where it cannot answer (no second
core, no interpreter to start, it failed), the triage stats the outputs itself, as before: the
answer is the same either way. Light on purpose: the child imports this module and the
standard library only.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

# Rows (the state's highest row id) from which a second process pays: below, the stats cost
# less than starting an interpreter (about 30 ms).
APART_FROM = 5000
END = "end"
QUERY = "SELECT rowid, ifnull(outputs, '[]') FROM inputs WHERE status='done'"


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
    """Whether each output (relative to `base`, which ends in a separator) exists: one stat
    each, as `os.path.exists` does, without its call a path (100,000 a nightly run)."""
    try:
        for o in outputs:
            os.stat(o if o.startswith("/") else base + o)
    except (OSError, ValueError):
        return False
    return True


class OutputCheck:
    """The child's answer, collected once (`missing`)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._proc: subprocess.Popen[str] | None = proc

    def missing(self) -> set[int] | None:
        """Row ids of converted inputs with an output missing; None where the child did not
        answer (then every output is to be stat'ed by the caller)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        try:
            out, _ = proc.communicate()
        except BaseException:
            _stop(proc)
            raise
        lines = out.split()
        if proc.returncode != 0 or not lines or lines[-1] != END:
            return None
        try:
            return {int(x) for x in lines[:-1]}
        except ValueError:
            return None

    def stop(self) -> None:
        """Not asked (nothing found, the run stopped): not left running."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop(proc)

    def __del__(self) -> None:
        self.stop()


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def start(db: sqlite3.Connection, db_path: Path, output: Path) -> OutputCheck | None:
    """The check of the state `db` (the caller's connection to `db_path`) started beside the
    caller, or None where it would not pay (a small state, a single core) or cannot start."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cores < 2:
        return None
    try:
        (rows,) = db.execute("SELECT ifnull(max(rowid), 0) FROM inputs").fetchone()
        if rows < APART_FROM:
            return None
        # -S (no site: a faster start), with this package's folder on the path in its place
        paths = [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
        proc = subprocess.Popen(
            [sys.executable, "-S", "-m", __name__, str(db_path), os.path.join(output, "")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
    except (OSError, sqlite3.Error):
        return None
    return OutputCheck(proc)


def main(argv: list[str]) -> int:
    db_path, base = argv
    db = sqlite3.connect(f"{Path(db_path).resolve().as_uri()}?mode=ro", uri=True)
    write = sys.stdout.write
    for rowid, outputs in db.execute(QUERY):
        if not all_there(base, output_list(outputs)):
            write(f"{rowid}\n")
    write(END + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
