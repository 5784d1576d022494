"""Find the inputs: files and folders, recursive, in a deterministic order.

Symbolic links are followed, but a folder is never entered twice (no loops); system clutter
(`Thumbs.db`, `.DS_Store`, `._*`, `desktop.ini`) is skipped quietly; include/exclude globs match
the path below the input root (`**` crosses folders).
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import UsageError

CLUTTER_NAMES = frozenset({"thumbs.db", ".ds_store", "desktop.ini", ".localized", "ehthumbs.db"})
CLUTTER_DIRS = frozenset(
    {
        ".orthovision",
        "__macosx",
        ".git",
        ".svn",
        "@eadir",
        ".trash",
        ".trashes",
        ".spotlight-v100",
        ".fseventsd",
        "$recycle.bin",
    }
)


@dataclass(frozen=True, slots=True)
class FoundInput:
    path: Path
    rel: str  # POSIX path below its root
    problem: str = ""  # set when the entry cannot be used (broken link, loop): reported, not fatal
    reason: str = ""  # the report's reason for `problem` (empty: `unreadable`)


def is_clutter(name: str) -> bool:
    low = name.lower()
    return low in CLUTTER_NAMES or name.startswith("._") or name.startswith(".orthovision-tmp-")


def _glob_regex(pattern: str) -> re.Pattern[str]:
    # fnmatch, but '*' stops at '/', '**' crosses folders; a pattern without '/' matches names.
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + "$", re.IGNORECASE)


class Filter:
    def __init__(self, include: Sequence[str] = (), exclude: Sequence[str] = ()):
        self.include = [(p, _glob_regex(p)) for p in include]
        self.exclude = [(p, _glob_regex(p)) for p in exclude]

    @staticmethod
    def _hit(rules: list[tuple[str, re.Pattern[str]]], rel: str) -> bool:
        name = rel.rsplit("/", 1)[-1]
        return any(rx.match(rel if "/" in p else name) for p, rx in rules)

    def excluded(self, rel: str) -> bool:
        return bool(self.exclude) and self._hit(self.exclude, rel)

    def wants(self, rel: str) -> bool:
        if self.include and not self._hit(self.include, rel):
            return False
        return not (self.exclude and self._hit(self.exclude, rel))


def find_inputs(
    paths: Sequence[Path],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    skip_dirs: Sequence[Path] = (),
) -> list[FoundInput]:
    """Every candidate file under `paths`, sorted by (argument order, relative path)."""
    filt = Filter(include, exclude)
    skip = {os.path.realpath(p) for p in skip_dirs}
    out: list[FoundInput] = []
    seen_files: set[tuple[int, int]] = set()
    for root in paths:
        if not os.path.lexists(root):
            raise UsageError(f"input {root} does not exist", path=root)
        if root.is_dir():
            found = sorted(_walk(root, filt, skip), key=lambda f: f.rel)
        else:
            found = [FoundInput(root, root.name, _file_problem(root))] if not is_clutter(root.name) else []
        for f in found:
            if not f.problem:
                try:
                    st = f.path.stat()
                    ident = (st.st_dev, st.st_ino)
                except OSError:
                    ident = None
                if ident is not None:
                    if ident in seen_files:  # the same file reached twice (links, repeated args)
                        continue
                    seen_files.add(ident)
            out.append(f)
    return out


def _walk(root: Path, filt: Filter, skip: set[str]) -> Iterator[FoundInput]:
    visited: set[tuple[int, int]] = set()
    stack = [(root, PurePosixPath())]
    while stack:
        folder, rel = stack.pop()
        try:
            st = folder.stat()
        except OSError as exc:
            yield FoundInput(folder, str(rel) or ".", f"cannot enter folder: {exc.strerror or exc}")
            continue
        if (st.st_dev, st.st_ino) in visited:
            continue  # symlink loop or a folder linked twice
        visited.add((st.st_dev, st.st_ino))
        if os.path.realpath(folder) in skip:
            continue
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield FoundInput(folder, str(rel) or ".", f"cannot list folder: {exc.strerror or exc}")
            continue
        for entry in entries:
            child_rel = rel / entry.name
            if is_clutter(entry.name):
                continue
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                if entry.name.lower() in CLUTTER_DIRS:
                    continue
                stack.append((Path(entry.path), child_rel))
                continue
            # A zip archive is opened whatever --include says: the globs apply to its members.
            is_zip = entry.name.lower().endswith(".zip")
            if not (filt.wants(str(child_rel)) or (is_zip and not filt.excluded(str(child_rel)))):
                continue
            yield FoundInput(Path(entry.path), str(child_rel), _file_problem(Path(entry.path)))


def _file_problem(path: Path) -> str:
    """Why a file-like entry cannot be an input; empty when it can."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if os.path.islink(path):
            return (
                "symbolic link loop"
                if exc.errno == errno.ELOOP
                else f"broken symbolic link: {exc.strerror or exc}"
            )
        return f"cannot read file: {exc.strerror or exc}"
    if not stat.S_ISREG(st.st_mode):
        # Opening a FIFO blocks for ever; a device may never end: never read either.
        return "not a regular file (a pipe, socket or device)"
    return ""
