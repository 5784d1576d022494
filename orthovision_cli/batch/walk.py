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
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import overload

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


class FoundInput:
    """A file found: its path (kept as the string: 100,000 inputs are held while a run lasts,
    and a Path object with its parts costs three times as much), its path below its root, why it
    cannot be used (if so), and its size and modification time as the walk saw them."""

    __slots__ = ("mtime_ns", "path_str", "problem", "reason", "rel", "size")

    def __init__(
        self,
        path: Path | str,
        rel: str,  # POSIX path below its root
        problem: str = "",  # set when the entry cannot be used (broken link, loop): reported, not fatal
        reason: str = "",  # the report's reason for `problem` (empty: `unreadable`)
        # -1: not known. A re-run compares them with the state's row without a stat of its own
        # (issue 25: a re-run costs the walk, once).
        size: int = -1,
        mtime_ns: int = -1,
    ) -> None:
        self.path_str = os.fspath(path)
        self.rel = rel
        self.problem = problem
        self.reason = reason
        self.size = size
        self.mtime_ns = mtime_ns

    @property
    def path(self) -> Path:
        return Path(self.path_str)

    def with_problem(self, problem: str, reason: str | None = None) -> FoundInput:
        """This input, found unusable after all (`reason`: the report's, else as it was)."""
        return FoundInput(self.path_str, self.rel, problem, self.reason if reason is None else reason)

    def _key(self) -> tuple[str, str, str, str, int, int]:
        return (self.path_str, self.rel, self.problem, self.reason, self.size, self.mtime_ns)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FoundInput) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"FoundInput({self.path_str!r}, {self.rel!r}, problem={self.problem!r})"

    def __reduce__(self) -> tuple[type[FoundInput], tuple[str, str, str, str, int, int]]:
        return (FoundInput, self._key())  # to a worker process, and back


class FoundList(Sequence[FoundInput]):
    """The inputs found, held by columns (issue 25): each path once as a string, where its `rel`
    starts in it, and its size and modification time in arrays; an input that is not simply
    "its root, then rel" (a zip member) or that has a problem is kept whole on the side. About a
    third of the memory of a list of `FoundInput` (a run holds every input found until its
    parts are done: 47 MB for 100,000). A `FoundInput` is made on each access."""

    __slots__ = ("_mtime", "_odd", "_paths", "_rel_at", "_size")

    def __init__(self, items: Iterable[FoundInput] = ()) -> None:
        self._paths: list[str] = []
        self._rel_at = array("i")  # where rel starts in the path; -1: the input is in _odd
        self._size = array("q")
        self._mtime = array("q")
        self._odd: dict[int, FoundInput] = {}
        self.extend(items)

    def append(self, f: FoundInput) -> None:
        if f.problem or f.reason:
            self._put(f.path_str, -1, f.size, f.mtime_ns, f)
        else:
            self.add(f.path_str, f.rel, f.size, f.mtime_ns)

    def add(self, path: str, rel: str, size: int, mtime_ns: int) -> None:
        """A file found without a problem (the walk's: no FoundInput made for it)."""
        at = len(path) - len(rel)
        if at > 0 and path.endswith(rel):  # `_put` spelt out: once a file found
            self._paths.append(path)
            self._rel_at.append(at)
            self._size.append(size)
            self._mtime.append(mtime_ns)
        else:
            self._put(path, -1, size, mtime_ns, FoundInput(path, rel, size=size, mtime_ns=mtime_ns))

    def _put(self, path: str, at: int, size: int, mtime_ns: int, odd: FoundInput | None) -> None:
        if odd is not None:
            self._odd[len(self._paths)] = odd
        self._paths.append(path)
        self._rel_at.append(at)
        self._size.append(size)
        self._mtime.append(mtime_ns)

    def extend(self, items: Iterable[FoundInput]) -> None:
        for f in items:
            self.append(f)

    def take(self, indices: Iterable[int]) -> FoundList:
        """The inputs at `indices`, in that order, copied column by column (no FoundInput made)."""
        out = FoundList()
        for i in indices:
            out._put(self._paths[i], self._rel_at[i], self._size[i], self._mtime[i], self._odd.get(i))
        return out

    def __len__(self) -> int:
        return len(self._paths)

    @overload
    def __getitem__(self, i: int) -> FoundInput: ...

    @overload
    def __getitem__(self, i: slice) -> FoundList: ...

    def __getitem__(self, i: int | slice) -> FoundInput | FoundList:
        if isinstance(i, slice):
            return self.take(range(*i.indices(len(self))))
        if i < 0:
            i += len(self._paths)
        at = self._rel_at[i]
        if at < 0:
            return self._odd[i]
        path = self._paths[i]
        return FoundInput(path, path[at:], size=self._size[i], mtime_ns=self._mtime[i])

    def __iter__(self) -> Iterator[FoundInput]:
        for i in range(len(self._paths)):
            yield self[i]

    def usable(self, i: int) -> bool:
        """Whether input `i` has no problem (found as a file that can be read)."""
        return self._rel_at[i] >= 0 or not self._odd[i].problem

    def rel_of(self, i: int) -> str:
        at = self._rel_at[i]
        return self._paths[i][at:] if at >= 0 else self._odd[i].rel

    def stat_of(self, i: int) -> tuple[int, int]:
        """(size, mtime_ns) of input `i` as the walk saw them (-1: not known)."""
        return self._size[i], self._mtime[i]

    def columns(self) -> tuple[list[str], array[int], array[int], array[int], dict[int, tuple[str, bool]]]:
        """The paths, where each rel starts in its path (-1: kept whole), the sizes and times as
        held (no copy), and the rel and usability of each input kept whole, by index."""
        odd = {i: (f.rel, not f.problem) for i, f in self._odd.items()}
        return self._paths, self._rel_at, self._size, self._mtime, odd

    def clear(self) -> None:
        self._paths, self._odd = [], {}
        self._rel_at, self._size, self._mtime = array("i"), array("q"), array("q")

    def paths(self) -> list[str]:
        """Every input's path (the strings held: no FoundInput made)."""
        return self._paths

    def where(self, keep: Callable[[str], bool]) -> FoundList:
        """The inputs whose path `keep` accepts, in their order."""
        return self.take(i for i, path in enumerate(self._paths) if keep(path))

    def __repr__(self) -> str:
        return f"FoundList({list(self)!r})"


def is_clutter(name: str) -> bool:
    # Asked of every entry of a walk (100,000 a nightly run): a name is lowered only when its
    # last three characters are those of a clutter name.
    if name.startswith(("._", ".orthovision-tmp-")):
        return True
    return name[-3:].lower() in _CLUTTER_ENDS and name.lower() in CLUTTER_NAMES


_CLUTTER_ENDS = frozenset(n[-3:] for n in CLUTTER_NAMES)


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


Ident = tuple[int, int]  # a folder's (device, inode)


def find_inputs(
    paths: Sequence[Path],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    skip_dirs: Sequence[Path] = (),
) -> FoundList:
    """Every candidate file under `paths`, sorted by (argument order, relative path)."""
    filt = Filter(include, exclude)
    skip: set[Ident] = set()  # (device, inode) of each folder to skip: no realpath of every folder walked
    for p in skip_dirs:
        try:
            st = os.stat(p)
        except OSError:
            continue  # not there: nothing to skip
        skip.add((st.st_dev, st.st_ino))
    out = FoundList()
    # (device << 64) | inode of each file: one int, not a tuple of two (100,000 inputs).
    seen_files: set[int] = set()
    for root in paths:
        if not os.path.lexists(root):
            raise UsageError(f"input {root} does not exist", path=root)
        if root.is_dir():
            _walk(root, filt, skip, seen_files, out)
        elif not is_clutter(root.name):
            _file(str(root), root.name, None, seen_files, out)
    return out


def _file(path: str, rel: str, entry: os.DirEntry[str] | None, seen: set[int], out: FoundList) -> None:
    """A file-like entry as an input, added to `out`: one stat (the directory entry's, where
    there is one); left out when reached before (links, repeated arguments)."""
    try:
        st = entry.stat() if entry is not None else os.stat(path)
    except OSError:
        out.append(FoundInput(path, rel, _file_problem(Path(path))))
        return
    if not stat.S_ISREG(st.st_mode):
        out.append(FoundInput(path, rel, _NOT_REGULAR))
        return
    ident = (st.st_dev << 64) | st.st_ino
    if ident not in seen:
        seen.add(ident)
        out.add(path, rel, st.st_size, st.st_mtime_ns)


def _walk(root: Path, filt: Filter, skip: set[Ident], seen: set[int], out: FoundList) -> None:
    """The files below `root` added to `out` in the order of their `rel` (a folder's entries
    sorted by name, a sub-folder's as if its name ended in '/': every path in it starts so), so
    that nothing needs sorting, or holding, afterwards. A folder's entries are gone through in
    one loop, left where a sub-folder starts and taken up again after it (no generator step an
    entry: a nightly run walks 100,000 files)."""
    visited: set[Ident] = set()
    plain = not (filt.include or filt.exclude)
    top = _folder(str(root), "", skip, visited, out)
    frames = [top] if top is not None else []
    while frames:
        prefix, rel, entries = frames[-1]
        for _, entry, is_dir in entries:
            name = entry.name
            child_rel = f"{rel}/{name}" if rel else name
            if is_dir:
                sub = _folder(prefix + name, child_rel, skip, visited, out)
                if sub is None:
                    continue
                frames.append(sub)
                break
            # A zip archive is opened whatever --include says: the globs apply to its members.
            if (
                plain
                or filt.wants(child_rel)
                or (name.lower().endswith(".zip") and not filt.excluded(child_rel))
            ):
                _file(prefix + name, child_rel, entry, seen, out)  # strings: no Path a file
        else:
            frames.pop()


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


# A folder being walked: its path and a slash, its rel, its entries left (sort key, entry, folder?).
Frame = tuple[str, str, Iterator[tuple[str, os.DirEntry[str], bool]]]


def _folder(folder: str, rel: str, skip: set[Ident], visited: set[Ident], out: FoundList) -> Frame | None:
    """One folder to walk: its path and a '/' to put a name after, its `rel`, and its entries
    sorted as `_walk` says (each with whether it is a folder), clutter left out. None for a
    folder not to walk; one that cannot be entered or listed goes to `out` with its reason."""
    try:
        st = os.stat(folder)
    except OSError as exc:
        out.append(FoundInput(folder, rel or ".", f"cannot enter folder: {exc.strerror or exc}"))
        return None
    ident = (st.st_dev, st.st_ino)
    if ident in visited or ident in skip:
        return None  # symlink loop, a folder linked twice, or the output
    visited.add(ident)
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if not is_clutter(e.name)]
    except OSError as exc:
        out.append(FoundInput(folder, rel or ".", f"cannot list folder: {exc.strerror or exc}"))
        return None
    kept = []  # (sort key, entry, whether a folder): each entry asked once
    for e in entries:
        if not _is_dir(e):
            kept.append((e.name, e, False))
        elif e.name.lower() not in CLUTTER_DIRS:
            kept.append((e.name + "/", e, True))
    kept.sort()  # by the key alone: keys are unique in a folder (a folder's ends in '/')
    prefix = folder if folder.endswith("/") else folder + "/"
    return prefix, rel, iter(kept)


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
