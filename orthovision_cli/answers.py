"""`OUT/orthovision-settings.toml`: what a person answered once for a source folder (a batch
fact, `labels.facts`), applied on every later run into that output (convert, watch,
`review --apply`).

The review page and `convert --confirm` ask "Are the radiographs in <folder> scanned films or
digital?" once per source folder (the folder given to `convert`/`watch`) instead of once per
file. The answer covers every file below that folder (the deepest answered folder wins):

    # orthovision: answers a person gave once for a source folder (docs/review.md#batch-facts)
    [[radiographs]]
    folder = "/srv/scans/films-1998"
    acquisition = "film"          # film: RG, digital: DX
    answered_by = "alice"
    answered_at = "2026-12-06T07:10:00Z"

A person may edit or delete an entry; options (`--radiographs`) and manifest rows win over it.
Every save rewrites the file atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from . import outlock
from .errors import UsageError
from .labels.facts import parse_radiographs

SETTINGS_NAME = "orthovision-settings.toml"
MAX_FILE = 16 << 20  # a settings file of one line per folder is far smaller
_HEADER = (
    "# orthovision: answers a person gave once for a source folder (docs/review.md#batch-facts).\n"
    "# Applied on every later run into this output; --radiographs and manifest rows win over them.\n"
)


@dataclass(frozen=True)
class Answer:
    folder: str  # absolute path of the source folder
    acquisition: str  # film or digital
    answered_by: str = ""
    answered_at: str = ""


def settings_path(output: Path) -> Path:
    return output / SETTINGS_NAME


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def load(output: Path) -> dict[str, Answer]:
    """The answers of an output folder, by folder; a bad file is a usage error naming it."""
    path = settings_path(output)
    try:
        try:
            raw = _read_regular(path)
        except NotADirectoryError:
            # The output folder cannot exist (a file stands in its path): no answers yet; the
            # run then says why it cannot create the folder (exit 5), not this file.
            return {}
        if raw is None:
            return {}
        data = tomllib.loads(raw.decode("utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}", path=path) from exc
    entries = data.get("radiographs", [])
    if not isinstance(entries, list):
        raise UsageError(f"{path}: radiographs must be a list of [[radiographs]] tables", path=path)
    out: dict[str, Answer] = {}
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("folder"), str):
            raise UsageError(f"{path}: [[radiographs]] entry {i} needs a folder", path=path)
        try:
            acquisition = parse_radiographs(str(entry.get("acquisition", "")), "acquisition")
        except UsageError as exc:
            raise UsageError(f"{path}: [[radiographs]] entry {i}: {exc.message}", path=path) from exc
        folder = str(PurePosixPath(entry["folder"]))
        out[folder] = Answer(
            folder, acquisition, str(entry.get("answered_by", "")), str(entry.get("answered_at", ""))
        )
    return out


def _read_regular(path: Path) -> bytes | None:
    """The file's bytes if it is a regular file (opened without following a link, without
    blocking: a FIFO in its place never hangs the review server); None if there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE:
            raise OSError(errno.EINVAL, "not a regular file of settings")
        return f.read(MAX_FILE + 1)


def radiographs_by_folder(output: Path | None) -> dict[str, str]:
    """folder -> film/digital, for `manifest.UserInput` (what the workers apply)."""
    if output is None:
        return {}
    return {folder: a.acquisition for folder, a in load(output).items()}


def source_folder(path: str, rel: str) -> str:
    """The source folder an input was found under (its path less `rel`), or its own folder."""
    p, r = PurePosixPath(path), PurePosixPath(rel)
    if len(r.parts) < len(p.parts) and p.parts[-len(r.parts) :] == r.parts:
        return str(PurePosixPath(*p.parts[: -len(r.parts)]))
    return str(p.parent)


class AnswerBook:
    """The answers of one output folder, shared by the review server's threads and --confirm."""

    def __init__(self, output: Path):
        self.output = output
        self.path = settings_path(output)
        self._lock = threading.Lock()
        self.by_folder = load(output)

    def radiographs_for(self, path: str) -> Answer | None:
        """The answer of the deepest answered folder that holds `path`."""
        parts = PurePosixPath(path).parts
        for depth in range(len(parts), 0, -1):
            found = self.by_folder.get(str(PurePosixPath(*parts[:depth])))
            if found is not None:
                return found
        return None

    def save(self, answer: Answer) -> Answer:
        answer = Answer(
            str(PurePosixPath(answer.folder)),
            parse_radiographs(answer.acquisition, "acquisition"),
            answer.answered_by,
            answer.answered_at or now(),
        )
        # One writer at a time across processes (two review pages, --confirm): the file as it
        # is now, this answer merged in, so nobody erases another's answer (issue 24).
        with self._lock, _locked(self.output):
            merged = {**load(self.output), answer.folder: answer}
            _write_atomic(self.path, _render(merged.values()))
            self.by_folder = merged
        return answer


def _locked(output: Path) -> contextlib.AbstractContextManager[None]:
    """An exclusive lock on `OUT/.orthovision/answers.lock` (`outlock`)."""
    return outlock.locked(output, ".orthovision/answers.lock")


def _toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _render(answers: Iterable[Answer]) -> str:
    lines = [_HEADER]
    for a in sorted(answers, key=lambda a: a.folder):
        lines.append("[[radiographs]]")
        lines.append(f"folder = {_toml_string(a.folder)}")
        lines.append(f"acquisition = {_toml_string(a.acquisition)}  # film: RG, digital: DX")
        lines.append(f"answered_by = {_toml_string(a.answered_by)}")
        lines.append(f"answered_at = {_toml_string(a.answered_at)}")
        lines.append("")
    return "\n".join(lines)


def _write_atomic(path: Path, text: str) -> None:
    outlock.write_atomic(path, text, "")
