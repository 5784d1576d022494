"""Zip archives as inputs: their image members become inputs like files in a folder.

Members are extracted once into the output's state folder (`.orthovision/archives/`), keeping
the archive's folder layout (studies and series group by folder) and each member's date, so a
re-run finds them unchanged without extracting again. Paths that try to leave the archive
(`../`, absolute names) are flattened; encrypted or oversized members are reported, not read.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import zipfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath

from ..inputs.formats import IMAGE_SUFFIXES
from .walk import CLUTTER_DIRS, Filter, FoundInput, is_clutter

MAX_MEMBER_BYTES = 4 << 30  # a single image larger than this in a zip is refused


def expand_archives(
    found: list[FoundInput], cache: Path, include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> list[FoundInput]:
    filt = Filter(include, exclude)
    out: list[FoundInput] = []
    for f in found:
        if f.problem or f.path.suffix.lower() != ".zip":
            out.append(f)
            continue
        try:
            with zipfile.ZipFile(f.path) as zf:
                out.extend(_members(f, zf, cache, filt))
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            out.append(replace(f, problem=f"not a readable zip archive: {exc}"))
    return out


def _members(archive: FoundInput, zf: zipfile.ZipFile, cache: Path, filt: Filter) -> list[FoundInput]:
    key = hashlib.sha256(str(archive.path.absolute()).encode()).hexdigest()[:16]
    base = cache / key
    out = []
    for info in sorted(zf.infolist(), key=lambda i: i.filename):
        if info.is_dir():
            continue
        parts = [
            p for p in PurePosixPath(info.filename.replace("\\", "/")).parts if p not in ("..", ".", "/", "")
        ]
        if (
            not parts
            or any(is_clutter(p) for p in parts)
            or any(p.lower() in CLUTTER_DIRS for p in parts[:-1])
        ):
            continue
        member = "/".join(parts)
        rel = f"{archive.rel}/{member}"
        if PurePosixPath(member).suffix.lower() not in IMAGE_SUFFIXES or not filt.wants(rel):
            continue
        dest = base.joinpath(*parts)
        problem = ""
        if info.flag_bits & 0x1:
            problem = "encrypted zip member"
        elif info.file_size > MAX_MEMBER_BYTES:
            problem = f"zip member of {info.file_size:,} bytes is too large"
        else:
            try:
                _extract(zf, info, dest)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
                problem = f"cannot extract zip member: {exc}"
        out.append(FoundInput(dest, rel, problem))
    return out


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path) -> None:
    mtime = time.mktime((*info.date_time, 0, 0, -1))
    try:
        st = dest.stat()
        if st.st_size == info.file_size and int(st.st_mtime) == int(mtime):
            return  # extracted by an earlier run, unchanged
    except FileNotFoundError:
        pass
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".orthovision-tmp-{os.getpid()}-{dest.name}")
    with zf.open(info) as src, tmp.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    os.utime(tmp, (mtime, mtime))
    os.replace(tmp, dest)
