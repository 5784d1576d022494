"""A PS3.10 File-set for media (USB stick, CD/DVD): a DICOMDIR and IDs-only file names.

One pass (issue 25): each instance's header is read once (never its pixels; in worker processes
when there are many, media_headers), its PATIENT/STUDY/SERIES/IMAGE records join a tree indexed
by key (media_records), and the file is copied straight to its IDs-only name,
`PT000000/ST000000/SE000000/IM000000` (8-character components, as PS3.10 and PS3.12 require;
the index of the record among its siblings, in the order met). The File-set is written into a
temporary folder beside the target, made durable, and moved into place, so an interrupted run
never leaves a half-written DICOMDIR (the next run deletes what a killed one left beside the
target); an earlier File-set at the target is replaced. One `dicomdir` at a time per target.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..dicom.durable import fsync_path, sync_filesystem
from ..errors import OutputError, UsageError
from .instances import DICOMDIR
from .media_headers import Header, headers, our_words
from .media_keys import LEVELS, invent_keys, record
from .media_records import Node, encode_record, image_record, level_records, write_dicomdir

FILESET_ID = "ORTHOVISION"
PREFIXES = ("PT", "ST", "SE", "IM")
_DIGITS = 10**6
_ALPHANUMERIC = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CHUNK = 16 << 20
_COPIERS = 4  # threads creating the copies (the filesystem's latency, not the CPU, is the limit)
_IN_FLIGHT = 256  # copies started and not yet confirmed, at most


@dataclass
class MediaSummary:
    folder: Path
    added: int = 0
    patients: int = 0
    studies: int = 0
    skipped: list[str] = field(default_factory=list)  # one line per instance left out
    # Record keys invented where instances lack them (media_keys), one line per value.
    invented: list[str] = field(default_factory=list)


def component(level: int, index: int) -> str:
    """The File ID component of the `index`-th record (from 0) among its siblings: 6 decimal
    digits, then (from the millionth on) "Z" and 5 base-36 digits, never equal to a decimal one."""
    if index < _DIGITS:
        return f"{PREFIXES[level]}{index:06d}"
    n, tail = index - _DIGITS, ""
    for _ in range(5):
        n, digit = divmod(n, 36)
        tail = _ALPHANUMERIC[digit] + tail
    if n:
        raise OutputError(f"more than {_DIGITS + 36**5} {LEVELS[level]} records in one folder")
    return f"{PREFIXES[level]}Z{tail}"


class _Builder:
    """The record tree, and the copies in the temporary folder `root` made by `copier`'s threads
    (creating thousands of small files is what takes the time here; several at once go faster)."""

    def __init__(self, root: Path, summary: MediaSummary, wanted: set[str], copier: Executor) -> None:
        self.root = root
        self.summary = summary
        self.wanted = wanted
        self.copier = copier
        self.tree = Node(bytearray())
        self.sops: set[str] = set()
        self.studies = 0
        self.invented: dict[str, None] = {}  # in order, once each
        # Copies under way: (the copy, rel, the records from the root to its IMAGE, their keys).
        self.pending: deque[tuple[Future[None], str, list[Node], tuple[str, ...]]] = deque()

    def add(self, path: Path, rel: str, header: Header | str) -> None:
        """Add the records of the instance at `path` from its `header` and start its copy to its
        IDs-only name; or leave it out with a line (unreadable, or a record key missing)."""
        if isinstance(header, str):
            self.summary.skipped.append(f"{rel}: left out of the File-set: {header}")
            return
        keys = header.keys
        if (self.wanted and keys[0] not in self.wanted) or keys[3] in self.sops:
            return  # another patient, or a second file of an instance already in
        chain, parts = self._place(keys)
        made: list[str] = []
        try:
            encoded: list[bytearray] = []
            if len(chain) < 4:  # a new PATIENT, STUDY or SERIES record: its Type 1 keys
                direct = level_records({e.tag: e for e in header.elements}, header.image[3])
                if direct is not None:  # every key there, as expected: copied
                    encoded = direct[len(chain) - 1 :]
                else:
                    ds = header.dataset()
                    keyed, made = invent_keys(ds)
                    levels = range(len(chain) - 1, 3)
                    encoded = [encode_record(record(level, ds, keyed)) for level in levels]
            encoded.append(image_record(parts, *header.image))
        except (ValueError, KeyError, AttributeError, TypeError) as exc:
            self.summary.skipped.append(f"{rel}: left out of the File-set: {our_words(exc)}")
            return
        dest = self.root.joinpath(*parts)
        if header.invented:
            made.append(header.invented)
        nodes = list(chain)
        for level in range(len(chain) - 1, 4):
            nodes.append(
                nodes[-1].add(keys[level], encoded[level + 1 - len(chain)], parts[level], leaf=level == 3)
            )
            self.studies += level == 1
        self.sops.add(keys[3])
        self.invented.update(dict.fromkeys(made))
        self.summary.added += 1
        self.pending.append((self.copier.submit(_copy, path, dest), rel, nodes, keys))
        while len(self.pending) > _IN_FLIGHT:
            self._settle()

    def finish(self) -> None:
        """Wait for every copy; an instance whose file could not be read is taken out again."""
        while self.pending:
            self._settle()

    def _settle(self) -> None:
        copy, rel, nodes, keys = self.pending.popleft()
        try:
            copy.result()  # OutputError (it cannot be written) ends the File-set
        except OSError as exc:  # it could not be read after all (gone, unreadable)
            self.summary.skipped.append(f"{rel}: left out of the File-set: {our_words(exc)}")
            self.summary.added -= 1
            self.sops.discard(keys[3])
            for level in range(4, 0, -1):  # its IMAGE record, then any record left empty
                parent, node = nodes[level - 1], nodes[level]
                parent.children.remove(node)
                parent.keys.pop(keys[level - 1], None)
                self.studies -= level == 2
                if parent.children:
                    break

    def _place(self, keys: tuple[str, str, str, str]) -> tuple[list[Node], list[str]]:
        """(the existing records on the instance's path, root first; its File ID)."""
        chain = [self.tree]
        for key in keys[:3]:
            found = chain[-1].child(key)
            if found is None:
                break
            chain.append(found)
        parts = [node.name for node in chain[1:]]
        parts.append(component(len(parts), chain[-1].made))
        while len(parts) < 4:
            parts.append(component(len(parts), 0))
        return chain, parts


def _copy(path: Path, dest: Path) -> None:
    """The instance as it is, at `dest` (its folders made by the first copy that needs them).
    Raises OutputError when it cannot be written, OSError when `path` cannot be read (nothing
    is left at `dest` then)."""
    with path.open("rb") as src:
        try:
            try:
                out = dest.open("wb")
            except FileNotFoundError:  # a new series: its folder (several threads may make it)
                dest.parent.mkdir(parents=True, exist_ok=True)
                out = dest.open("wb")
        except OSError as exc:
            raise OutputError(f"cannot write {dest}: {exc.strerror or exc}", path=dest) from exc
        with out:
            while True:
                try:
                    chunk = src.read(_CHUNK)
                except OSError:
                    out.close()
                    dest.unlink(missing_ok=True)
                    raise
                if not chunk:
                    return
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise OutputError(f"cannot write {dest}: {exc.strerror or exc}", path=dest) from exc


def write_fileset(
    files: Iterable[tuple[Path, str]],
    folder: Path,
    *,
    fileset_id: str = FILESET_ID,
    patient_ids: Iterable[str] = (),
) -> MediaSummary:
    """Write the File-set of `files` ((path, rel) of PS3.10 files, e.g. scan.find_files) to
    `folder`. Instances that cannot be read or lack a record key are left out, one line each."""
    if len(fileset_id) > 16 or not fileset_id.replace("_", "").replace(" ", "").isalnum():
        raise UsageError(f"--fileset-id {fileset_id!r}: at most 16 letters, digits, spaces or _")
    if folder.exists() and any(folder.iterdir()) and not (folder / DICOMDIR).is_file():
        raise UsageError(f"{folder} exists and is not a File-set written by orthovision; choose another --to")
    files = list(files)  # before the temporary folder exists (it may lie inside the output)
    summary = MediaSummary(folder)
    parent = folder.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for stale in parent.glob(".orthovision-media-*"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=".orthovision-media-", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot write in {parent}: {exc.strerror or exc}", path=parent) from exc
    try:
        with _copier() as copier:
            builder = _Builder(tmp, summary, set(patient_ids), copier)
            for (path, rel), header in zip(files, headers([p for p, _ in files]), strict=True):
                builder.add(path, rel, header)
            builder.finish()
        summary.invented = list(builder.invented)
        summary.patients, summary.studies = len(builder.tree.children), builder.studies
        if summary.added:
            write_dicomdir(builder.tree, tmp / DICOMDIR, fileset_id.upper())
            _make_durable(tmp)
            _replace(tmp, folder)
    except OSError as exc:
        raise OutputError(
            f"cannot write the File-set to {folder}: {exc.strerror or exc}", path=folder
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already once moved into place
    return summary


@contextlib.contextmanager
def _copier() -> Iterator[Executor]:
    pool = ThreadPoolExecutor(_COPIERS, thread_name_prefix="dicomdir-copy")
    try:
        yield pool
    finally:  # an error or Ctrl-C: no copy starts any more, those under way end
        pool.shutdown(wait=True, cancel_futures=True)


def _replace(tmp: Path, folder: Path) -> None:
    old = None
    if folder.exists():
        old = tmp.with_name(f"{tmp.name}-old")
        folder.rename(old)
    tmp.rename(folder)
    fsync_path(folder.absolute().parent)  # the rename itself, durable
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _make_durable(root: Path) -> None:
    """Every copy and the DICOMDIR on disk before the rename: one syncfs, or an fsync each."""
    if sync_filesystem(root):
        return
    for folder, _dirs, files in os.walk(root):
        for name in files:
            fsync_path(Path(folder, name))
