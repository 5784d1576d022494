"""Zip archives as inputs: their image members become inputs like files in a folder.

Zips made by anything lie, so before a byte is extracted an archive is checked against bounds
(`ArchiveLimits`: total size, member count, per member the expansion ratio; `--zip-max-*`):
a zip bomb is refused from its central directory, nothing written. Extraction also stops at the
declared size (a member that expands past it is refused).

Members are extracted into the output's state folder (`.orthovision/archives/`), keeping the
archive's folder layout (studies and series group by folder) and each member's date, so a
re-run sees them unchanged; `clean_archives` removes them after the run (only members a person
must still review stay, for the review page). Every member stays inside: `..` becomes `_parent_`
and an absolute name starts at `_root_`, so `../../x.jpg` and `x.jpg` stay two inputs. Two
members that would land on one path (the same name twice, names differing only in case) get
`~2`, `~3`, ... before their extension: none is lost. A name too long for the file system is
stored under a short one; its input path (`rel`) stays the member's name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
import zipfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..defaults import TMP_PREFIX, ZIP_MAX_MEMBERS, ZIP_MAX_RATIO, ZIP_MAX_SIZE
from ..inputs.formats import IMAGE_SUFFIXES
from .walk import CLUTTER_DIRS, Filter, FoundInput, FoundList, is_clutter

REASON = "archive-refused"  # the report's reason for a refused archive or member
RATIO_FLOOR = 1 << 20  # members smaller than this are never refused for their ratio
MAX_COMPONENT_BYTES = 180  # an extracted path component longer than this is stored shortened


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds checked on the central directory, before extraction (docs/batch.md)."""

    max_total: int = ZIP_MAX_SIZE  # bytes of the image members of one archive, together
    max_members: int = ZIP_MAX_MEMBERS  # entries of one archive
    max_ratio: int = ZIP_MAX_RATIO  # a member's size over its compressed size


def expand_archives(
    found: FoundList,
    cache: Path,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    limits: ArchiveLimits | None = None,
) -> FoundList:
    """`found` with each zip archive's image members in its place (extracted to `cache`); the
    same list when there is no archive."""
    if not any(p[-4:].lower() == ".zip" for p in found.paths()):
        return found
    filt = Filter(include, exclude)
    lim = limits or ArchiveLimits()
    out = FoundList()
    for f in found:
        if f.problem or not f.path_str.lower().endswith(".zip"):  # no Path an input (issue 25)
            out.append(f)
            continue
        try:
            with zipfile.ZipFile(f.path) as zf:
                out.extend(_members(f, zf, cache, filt, lim))
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            out.append(f.with_problem(f"not a readable zip archive: {exc}"))
    return out


def _parts(filename: str) -> list[str]:
    """The member's path as components that stay inside: `..` and a root become names."""
    name = filename.replace("\\", "/")
    parts: list[str] = ["_root_"] if name.startswith("/") or name[1:3] == ":/" else []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        parts.append("_parent_" if p == ".." else p.replace(":", "_"))
    return parts


def _wanted(parts: list[str]) -> bool:
    return (
        bool(parts)
        and not any(is_clutter(p) for p in parts)
        and not any(p.lower() in CLUTTER_DIRS for p in parts[:-1])
        and PurePosixPath(parts[-1]).suffix.lower() in IMAGE_SUFFIXES
    )


def _refused(archive: FoundInput, zf: zipfile.ZipFile, filt: Filter, lim: ArchiveLimits) -> str:
    """Why the whole archive is refused before extraction; empty when it is not."""
    infos = zf.infolist()
    if len(infos) > lim.max_members:
        return f"zip archive of {len(infos):,} members, more than --zip-max-members {lim.max_members:,}"
    total = 0
    for info in infos:
        parts = _parts(info.filename)
        if not info.is_dir() and _wanted(parts) and filt.wants(f"{archive.rel}/{'/'.join(parts)}"):
            total += info.file_size
    if total > lim.max_total:
        return (
            f"zip archive would extract {total:,} bytes of images, more than --zip-max-size {lim.max_total:,}"
        )
    return ""


def _member_problem(info: zipfile.ZipInfo, lim: ArchiveLimits) -> str:
    if info.flag_bits & 0x1:
        return "encrypted zip member"
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size >= RATIO_FLOOR and ratio > lim.max_ratio:
        return (
            f"zip member expands {ratio:,.0f}:1 ({info.compress_size:,} to {info.file_size:,} bytes), "
            f"more than --zip-max-ratio {lim.max_ratio}"
        )
    return ""


def _members(
    archive: FoundInput, zf: zipfile.ZipFile, cache: Path, filt: Filter, lim: ArchiveLimits
) -> list[FoundInput]:
    refused = _refused(archive, zf, filt, lim)
    if refused:
        return [archive.with_problem(refused, REASON)]
    key = hashlib.sha256(os.fsencode(archive.path.absolute())).hexdigest()[:16]
    base = cache / key
    out = []
    taken: set[str] = set()
    for info in sorted(zf.infolist(), key=lambda i: i.filename):
        if info.is_dir():
            continue
        parts = _parts(info.filename)
        if not _wanted(parts) or not filt.wants(f"{archive.rel}/{'/'.join(parts)}"):
            continue
        parts = _distinct(parts, taken)
        rel = f"{archive.rel}/{'/'.join(parts)}"
        dest = base.joinpath(*(_short(p) for p in parts))
        problem = _member_problem(info, lim)
        reason = REASON if problem and not problem.startswith("encrypted") else ""
        if not problem:
            try:
                _extract(zf, info, dest)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, ValueError) as exc:
                problem = f"cannot extract zip member: {exc}"
        out.append(FoundInput(dest, rel, problem, reason))
    return out


def _distinct(parts: list[str], taken: set[str]) -> list[str]:
    """`parts`, or with `~2`, `~3`, ... before the extension when an earlier member holds that
    path (compared case-insensitively: the extraction folder may be on such a file system)."""
    path = "/".join(parts)
    n = 2
    while path.lower() in taken:
        stem = PurePosixPath(parts[-1])
        path = "/".join([*parts[:-1], f"{stem.stem}~{n}{stem.suffix}"])
        n += 1
    taken.add(path.lower())
    return path.split("/")


def _short(part: str) -> str:
    """A component the file system can hold: a long one becomes its start, a hash and its
    extension (the temporary file's prefix must fit beside it, within 255 bytes)."""
    if len(os.fsencode(part)) <= MAX_COMPONENT_BYTES:
        return part
    suffix = PurePosixPath(part).suffix[:10]
    digest = hashlib.sha256(os.fsencode(part)).hexdigest()[:12]
    return f"{part[:40]}-{digest}{suffix}"


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> None:
    mtime = time.mktime((*info.date_time, 0, 0, -1))
    try:
        st = dest.stat()
        if st.st_size == info.file_size and int(st.st_mtime) == int(mtime):
            return  # extracted already in this run or a kept one, unchanged
    except FileNotFoundError:
        pass
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(os.fsencode(dest.name)).hexdigest()[:12]
    tmp = dest.with_name(f"{TMP_PREFIX}{os.getpid()}-{digest}")
    try:
        with zf.open(info) as src, tmp.open("wb") as dst:
            # zipfile stops at the declared size and checks the CRC: a member that expands
            # past what its directory says is refused, never extracted without end.
            shutil.copyfileobj(src, dst, 1 << 20)
        os.utime(tmp, (mtime, mtime))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def clean_archives(cache: Path, keep: Collection[str]) -> None:
    """Remove what was extracted, but the members in `keep` (absolute paths: those a person
    must still review, which the review page shows); then the folders left empty."""
    if not cache.is_dir():
        return
    for folder, dirs, files in os.walk(cache, topdown=False):
        for name in files:
            path = os.path.join(folder, name)
            if path not in keep:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        for name in dirs:
            with contextlib.suppress(OSError):  # not empty: a kept member
                os.rmdir(os.path.join(folder, name))
    with contextlib.suppress(OSError):
        cache.rmdir()
