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
from pathlib import Path

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
    # As the walk saw the file (-1: not known): a re-run compares them with the state's row
    # without a stat of its own (issue 25: a re-run costs the walk, once).
    size: int = -1
    mtime_ns: int = -1


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
            found = sorted(_walk(root, filt, skip), key=lambda fi: fi[0].rel)
        else:
            found = [_file(root, root.name)] if not is_clutter(root.name) else []
        for f, ident in found:
            if ident is not None:
                if ident in seen_files:  # the same file reached twice (links, repeated args)
                    continue
                seen_files.add(ident)
            out.append(f)
    return out


Found = tuple[FoundInput, "tuple[int, int] | None"]  # and the file's (device, inode) when usable


def _file(path: Path, rel: str, entry: os.DirEntry[str] | None = None) -> Found:
    """A file-like entry as an input: one stat (the directory entry's, where there is one)."""
    try:
        st = entry.stat() if entry is not None else os.stat(path)
    except OSError:
        return FoundInput(path, rel, _file_problem(path)), None
    if not stat.S_ISREG(st.st_mode):
        return FoundInput(path, rel, _NOT_REGULAR), None
    return FoundInput(path, rel, size=st.st_size, mtime_ns=st.st_mtime_ns), (st.st_dev, st.st_ino)


def _walk(root: Path, filt: Filter, skip: set[str]) -> Iterator[Found]:
    visited: set[tuple[int, int]] = set()
    stack = [(root, "")]
    while stack:
        folder, rel = stack.pop()
        try:
            st = folder.stat()
        except OSError as exc:
            yield FoundInput(folder, rel or ".", f"cannot enter folder: {exc.strerror or exc}"), None
            continue
        if (st.st_dev, st.st_ino) in visited:
            continue  # symlink loop or a folder linked twice
        visited.add((st.st_dev, st.st_ino))
        if os.path.realpath(folder) in skip:
            continue
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield FoundInput(folder, rel or ".", f"cannot list folder: {exc.strerror or exc}"), None
            continue
        for entry in entries:
            name = entry.name
            if is_clutter(name):
                continue
            child_rel = f"{rel}/{name}" if rel else name
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                if name.lower() in CLUTTER_DIRS:
                    continue
                stack.append((folder / name, child_rel))
                continue
            # A zip archive is opened whatever --include says: the globs apply to its members.
            is_zip = name.lower().endswith(".zip")
            if not (filt.wants(child_rel) or (is_zip and not filt.excluded(child_rel))):
                continue
            yield _file(folder / name, child_rel, entry)  # cheaper than parsing entry.path


_NOT_REGULAR = "not a regular file (a pipe, socket or device)"


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
        return _NOT_REGULAR
    return ""
